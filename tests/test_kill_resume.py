"""Kill and resume, for real: `bench train` and `bench transfer` (crowd counting,
segmentation) run as subprocesses and are SIGKILLed at named points (bench.util.faults: the
process kills itself there with SIGKILL, so the place is exact and nothing gets to clean
up), then rerun until one finishes. The final weights, metrics, records and leaderboard
rows must equal those of an uninterrupted run, and no temporary file may be left.

Kill points covered (11): mid-epoch (3), mid-iteration (2), during a latest.pt write (2),
during a best.pt write, during a segmentation checkpoint write, during the density-cache
build, during the result.json write, each resumed by the next process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.report.collect import collect
from bench.ticket.schema import make_ticket
from bench.util.faults import ENV_KILL_AT

ROOT = Path(__file__).resolve().parents[1]
# Run facts: how a run went, not what it computed (they differ between a killed and an
# uninterrupted run by design).
RUN_FACTS = ("resumed_from_epoch", "density_maps_built")
VOLATILE_COLUMNS = ("run_dir", "code_version", "timestamp", "record", "latency")


def bench(args: list[str], tmp: Path, kill_at: str | None = None) -> None:
    """Run `bench ARGS`; with `kill_at`, it must die of SIGKILL at that point."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env |= {"TICKETBENCH_CACHE": str(tmp / "cache"), "TICKETBENCH_CHECKPOINT_EVERY": "2b"}
    env.pop(ENV_KILL_AT, None)
    if kill_at:
        env[ENV_KILL_AT] = kill_at
    cmd = [sys.executable, "-m", "bench.cli.main", *args]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if kill_at:
        assert proc.returncode == -signal.SIGKILL, f"{kill_at} not reached: {proc.stderr[-3000:]}"
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]


def killed_and_resumed(args: list[str], tmp: Path, kills: list[str]) -> tuple[Path, Path]:
    """An uninterrupted run into tmp/ref; the same run killed at each point in turn, then
    finished, into tmp/out."""
    ref, out = tmp / "ref", tmp / "out"
    bench([*args, "--out", str(ref)], tmp)
    for point in kills:
        bench([*args, "--out", str(out)], tmp, kill_at=point)
    bench([*args, "--out", str(out)], tmp)
    return ref, out


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return obj.get("model") or obj["state_dict"]


def assert_same_weights(ref: Path, out: Path, pattern: str) -> None:
    files = sorted(p.relative_to(ref) for p in ref.glob(f"*/{pattern}"))
    assert files and files == sorted(p.relative_to(out) for p in out.glob(f"*/{pattern}"))
    for rel in files:
        a, b = _tensors(ref / rel), _tensors(out / rel)
        assert a.keys() == b.keys(), rel
        assert all(torch.equal(a[k], b[k]) for k in a), rel


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    rec = {k: v for k, v in record.items() if k != "provenance"}
    extras = rec["result"]["extras"]
    rec["result"] = {**rec["result"], "extras": {k: v for k, v in extras.items()
                                                  if k not in RUN_FACTS}}  # fmt: skip
    rec["cost"] = {k: v for k, v in rec["cost"].items() if "latency" not in k}
    return rec


def assert_same_records(ref: Path, out: Path) -> None:
    def records(root: Path) -> dict[Path, dict]:
        paths = (root / "records").rglob("*.json")
        return {p.relative_to(root): json.loads(p.read_text()) for p in paths}

    a, b = records(ref), records(out)
    assert a.keys() == b.keys() and a
    for rel in a:
        assert b[rel]["provenance"]["status"] == "finished"
        assert _comparable(a[rel]) == _comparable(b[rel]), rel
        assert b[rel]["provenance"]["wall_time_s"] > 0
    rows = [
        [
            {k: v for k, v in row.items()
             if not any(w in k for w in (*VOLATILE_COLUMNS, *RUN_FACTS))}
            for row in collect(root)
        ]
        for root in (ref, out)
    ]  # fmt: skip
    assert rows[0] == rows[1] and rows[0]


def assert_same_metrics(ref: Path, out: Path) -> None:
    def lines(path: Path) -> list[dict]:
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "time_s"} for r in recs]

    for path in ref.glob("*/metrics.jsonl"):
        assert lines(path) == lines(out / path.relative_to(ref)), path


def assert_clean(*roots: Path) -> None:
    """No temporary or half-written file; every run directory released."""
    for root in roots:
        assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], root
        for lock in root.glob("*/run.lock"):
            assert lock.read_text() == "", f"{lock} still names a holder"


def _ticket(tmp: Path, backbone: str, mask: list[int]) -> Path:
    prov = {"kind": "baseline", "baseline": "random", "seed": 0}
    return make_ticket(f"{backbone}-se-k", backbone, "se", mask, prov).save(tmp / "t.json")


@pytest.mark.slow
def test_bench_train_killed_five_times(tmp_path: Path) -> None:
    from fixtures import write_fashion_mnist_idx

    data = write_fashion_mnist_idx(tmp_path / "fm", train_per_class=20, test_per_class=4)
    # 96 images / batch 16: 6 steps per epoch, checkpoints every 2 batches.
    args = ["train", "fashion-mnist", "resnet20-se", "--mask", "full", "--data-root",
            str(data), "--epochs", "2", "--batch-size", "16", "--lr", "0.05",
            "--warmup-epochs", "0", "--heldout", "40", "--train-limit", "96"]  # fmt: skip
    kills = [
        "train.step@3",  # epoch 1, batch 3: resumes from batch 2
        "write:latest.pt@2",  # the epoch-end latest.pt half written: resumes from batch 4
        "write:best.pt",  # best.pt half written
        "train.step@4",  # epoch 2, batch 2: resumes from the end of epoch 1
        "write:result.json",  # trained, not yet recorded: resumes to scoring
    ]
    ref, out = killed_and_resumed(args, tmp_path, kills)
    assert_same_weights(ref, out, "*.pt")
    assert_same_metrics(ref, out)
    assert_same_records(ref, out)
    assert_clean(out)


@pytest.mark.slow
def test_crowd_counting_transfer_killed_three_times(tmp_path: Path) -> None:
    from tasks.crowd_counting.sample import write_sample

    data = write_sample(tmp_path / "data", parts=("B",))
    ticket = _ticket(tmp_path, "resnet18", [1, 0, 0, 1, 1, 0, 0, 1])

    def args(cache: str) -> list[str]:
        return ["transfer", "--ticket", str(ticket), "--task", "crowd_counting", "--dataset",
                "shanghaitech-b", "--data-root", str(data), "--pretrained", "none",
                "--no-controls", "--iters", "8", "--opt", "crop_size=48", "--opt",
                "cost_size=64,64", "--opt", "latency_repeats=0", "--opt",
                f"cache_dir={tmp_path / cache}"]  # fmt: skip

    ref = tmp_path / "ref"
    bench([*args("ref-maps"), "--out", str(ref)], tmp_path)
    out = tmp_path / "out"
    for point in (
        "write:GT_IMG_2.density.h5",  # a density map half written
        "train.step@3",  # epoch 1, batch 3 (5 steps per epoch): resumes from batch 2
        "write:latest.pt@2",  # the epoch-end latest.pt half written: resumes from batch 4
    ):
        bench([*args("maps"), "--out", str(out)], tmp_path, kill_at=point)
    bench([*args("maps"), "--out", str(out)], tmp_path)
    assert_same_weights(ref, out, "*.pt")
    assert_same_metrics(ref, out)
    assert_same_records(ref, out)
    assert_clean(out, tmp_path / "maps")
    assert sorted(p.name for p in (tmp_path / "maps").rglob("*.h5")) == sorted(
        p.name for p in (tmp_path / "ref-maps").rglob("*.h5")
    )


@pytest.mark.slow
def test_segmentation_transfer_killed_three_times(tmp_path: Path) -> None:
    from fixtures_seg import random_ticket, write_cityscapes

    data = write_cityscapes(tmp_path / "cityscapes")
    ticket = random_ticket().save(tmp_path / "t.json")
    # 6 iterations, a checkpoint (and validation) every 2.
    args = ["transfer", "--ticket", str(ticket), "--task", "segmentation", "--data-root",
            str(data), "--pretrained", "none", "--no-controls", "--iters", "6", "--decoder",
            "fcn", "--opt", "batch_size=2", "--opt", "val_interval=2", "--opt",
            "measure_latency=false"]  # fmt: skip
    kills = [
        "seg.iter@3",  # after iteration 3: resumes from iter_2.pth
        "write:iter_4.pth",  # iter_4.pth half written: resumes from iter_2.pth again
        "seg.iter@2",  # after iteration 4 (checkpointed): resumes from iter_4.pth
    ]
    ref, out = killed_and_resumed(args, tmp_path, kills)
    assert_same_weights(ref, out, "iter_6.pth")
    assert_same_records(ref, out)
    assert_clean(out)
