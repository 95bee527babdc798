"""Search under torchrun (2 gloo processes): sharded scores equal one process's; a whole
search (DDP supernet with a per-step mask, sharded evaluation) writes one valid ticket.

Run as a script, this file is the torchrun worker; as a test module, it launches itself.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the worker runs outside pytest
from fixtures_search import one_thread_fixture  # noqa: E402, F401  (fixture "one_thread")

ROOT = Path(__file__).resolve().parents[1]
MASKS = [(1,) * 9, (0,) * 9, (1, 0, 0, 1, 1, 0, 1, 0, 1)]


def _net():
    from bench.models.resnet import build_model

    torch.manual_seed(0)
    return build_model("resnet20-se", num_classes=10).eval()


def _scores(data_root: Path) -> dict[str, list[tuple[float, float, int]]]:
    from bench.data.datasets import load_splits
    from bench.search.evaluator import SupernetScorer
    from bench.search.run import recalibration_batches

    splits = load_splits("fashion-mnist", data_root, image_size=16)
    recal = recalibration_batches(splits.train, 2, 8)
    out = {}
    for label, batches in (("plain", None), ("recal", recal)):
        scorer = SupernetScorer(
            _net(), splits.heldout, "cpu", batch_size=8, recalib_batches=batches
        )
        # 40 images over 2 ranks, and a prefix of 15 (8 + 7: uneven shards).
        out[label] = [(s.top1, s.loss, s.n) for m in MASKS for s in (scorer(m, 40), scorer(m, 15))]
    return out


def _worker(out: Path, data_root: Path) -> None:
    from fixtures_search import DATASET, MODEL, TINY

    from bench.engine.distributed import destroy_distributed, init_distributed
    from bench.search.run import run_search

    info = init_distributed()
    assert info.world_size == 2
    scores = _scores(data_root)
    ticket, run_dir = run_search(
        DATASET,
        MODEL,
        out_root=out / "runs",
        data_root=data_root,
        strategy="random",
        budget=5,
        **TINY,
    )
    torch.save(
        {"scores": scores, "ticket": str(ticket), "run_dir": str(run_dir)},
        out / f"rank{info.rank}.pt",
    )
    destroy_distributed()


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_search_under_torchrun(tmp_path: Path, search_fmnist_root: Path) -> None:
    from bench.engine.distributed import torchrun_command
    from bench.ticket.schema import load_ticket
    from bench.util.io import read_json, read_jsonl

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    cmd = torchrun_command(
        2, [__file__, "--out", str(tmp_path), "--data-root", str(search_fmnist_root)]
    )
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)

    # Sharded and all-reduced: every rank holds the single-process numbers.
    single = _scores(search_fmnist_root)
    for label in ("plain", "recal"):
        assert [s[0] for s in r0["scores"][label]] == [s[0] for s in single[label]]
        assert r0["scores"][label] == r1["scores"][label]
        for (_, l0, n0), (_, l1, n1) in zip(r0["scores"][label], single[label]):
            assert n0 == n1 and l0 == pytest.approx(l1, rel=1e-5)

    assert r0["ticket"] == r1["ticket"] and r0["run_dir"] == r1["run_dir"]
    ticket = load_ticket(r0["ticket"])
    run_dir = Path(r0["run_dir"])
    assert ticket.provenance["budget"]["spent"] == 5.0
    assert len([e for e in read_jsonl(run_dir / "episodes.jsonl") if not e["cached"]]) == 5
    supernet = tmp_path / "runs" / ticket.provenance["supernet_run"]
    assert read_json(supernet / "result.json")["world_size"] == 2


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    a = parser.parse_args()
    _worker(a.out, a.data_root)
