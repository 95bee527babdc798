"""Two-process gloo run under torchrun: equal weights, rank-0-only files, exact reductions.

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
from torch import nn
from torch.utils.data import TensorDataset

from bench.engine import (
    TrainHParams,
    destroy_distributed,
    evaluate,
    init_distributed,
    load_model_weights,
    prepare_run,
    train,
)
from bench.engine.distributed import torchrun_command
from bench.engine.rundir import CheckpointEvery
from bench.util.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(32, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def blobs(n: int, seed: int, classes: int = 4) -> TensorDataset:
    templates = torch.randn(classes, 3, 8, 8, generator=torch.Generator().manual_seed(1234))
    y = torch.arange(n) % classes
    noise = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(templates[y] + 0.7 * noise, y)


HP = TrainHParams(epochs=2, batch_size=16, eval_batch_size=8, lr=0.05, warmup_epochs=1)
TRAIN_N, VAL_N = 64, 37  # 37: uneven eval shards (19 + 18) and a short last batch


def _worker(out: Path, hp: TrainHParams) -> None:
    info = init_distributed()
    assert info.world_size == 2
    runs = out / "runs"
    writes: list[str] = []
    if not info.is_main:
        # Record every attempt of this rank to create/modify/remove anything under runs/.
        # (Our writers all go through os.open/os.replace, which raise audit events.)
        def audit(event: str, args: tuple) -> None:
            if event == "open" and args and str(args[0]).startswith(str(runs)):
                mode, flags = args[1], args[2]
                writing = (mode is not None and any(c in mode for c in "wax+")) or (
                    mode is None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                )
                if writing:
                    writes.append(f"open {args[0]}")
            elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
                if any(str(a).startswith(str(runs)) for a in args if a is not None):
                    writes.append(f"{event} {args}")

        sys.addaudithook(audit)
    plan = prepare_run(runs, "train", {"dataset": "blobs"}, hp)
    torch.manual_seed(0)  # same init on both ranks (DDP would broadcast rank 0's anyway)
    model = TinyNet()
    res = train(
        model,
        blobs(TRAIN_N, 0),
        {"val": blobs(VAL_N, 1)},
        hp,
        plan.path,
        "cpu",
        select_on="val",
        log=lambda _m: None,
        progress=False,
    )
    resumed = _killed_mid_epoch_and_resumed(out / "runs2", hp)
    torch.save(
        {"state": model.state_dict(), "result": res, "writes": writes, "dir": str(plan.path),
         "resumed": resumed},
        out / f"rank{info.rank}.pt",
    )  # fmt: skip
    destroy_distributed()


class Killed(Exception):
    pass


def _killed_mid_epoch_and_resumed(runs: Path, hp: TrainHParams) -> dict:
    """The same run stopped on every rank before step 3 (epoch 1, batch 3 of 4; checkpoint
    after every batch), then resumed: it must end as the uninterrupted one."""

    def kill(step: int) -> None:
        if step == 3:
            raise Killed

    def run(init_seed: int, **kw) -> dict:
        plan = prepare_run(runs, "train", {"dataset": "blobs"}, hp)
        torch.manual_seed(init_seed)
        model = TinyNet()
        res = train(model, blobs(TRAIN_N, 0), {"val": blobs(VAL_N, 1)}, hp, plan.path, "cpu",
                    select_on="val", log=lambda _m: None, progress=False,
                    checkpoint=CheckpointEvery(seconds=None, batches=1), **kw)  # fmt: skip
        return {"state": model.state_dict(), "history": res["history"]}

    try:
        run(0, before_step=kill)
    except Killed:
        pass
    return run(5)  # another init: the checkpoint must overwrite it


# channels_last: CPU convolutions in that format under DDP (gradient buckets and all).
@pytest.mark.parametrize("channels_last", [False, True])
def test_two_process_gloo(tmp_path: Path, channels_last: bool) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    flags = ["--channels-last"] if channels_last else []
    cmd = torchrun_command(2, [__file__, "--out", str(tmp_path), *flags])
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    conv = r0["state"]["body.0.weight"]  # trained in the format asked for
    assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert r1["writes"] == []
    run = Path(r0["dir"])
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt",
        "hparams.json",
        "latest.pt",
        "metrics.jsonl",
        "previous.pt",  # epoch 1's resume point, kept when epoch 2's replaced it
        "run.lock",
    ]

    res0, res1 = r0["result"], r1["result"]
    assert res0["world_size"] == 2 and res0["complete"]
    assert res0["steps"] == res1["steps"] == 2 * (TRAIN_N // HP.batch_size)
    for a, b in zip(res0["history"], res1["history"], strict=True):  # reduced: same everywhere
        assert (a["train"], a["eval"]) == (b["train"], b["eval"])
    assert res0["final_train"]["n"] == TRAIN_N
    assert [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]

    # The reduced metrics equal one process scoring the whole split with the same weights.
    model = TinyNet()
    load_model_weights(model, run / "latest.pt")
    single = evaluate(model, blobs(VAL_N, 1), "cpu", batch_size=8)
    ddp = res0["final"]["val"]
    assert ddp["n"] == single["n"] == VAL_N
    assert ddp["top1"] == single["top1"] and ddp["top5"] is None
    assert ddp["loss"] == pytest.approx(single["loss"], rel=1e-6)

    # Killed mid-epoch on both ranks and resumed: the uninterrupted run's weights and
    # per-epoch metrics (the partial sums of every rank were checkpointed).
    for r in (r0, r1):
        resumed = r["resumed"]
        assert all(torch.equal(v, resumed["state"][k]) for k, v in r0["state"].items())
        strip = [{k: v for k, v in h.items() if k != "time_s"} for h in resumed["history"]]
        assert strip == [{k: v for k, v in h.items() if k != "time_s"} for h in res0["history"]]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    _worker(args.out, HP.replace(channels_last=args.channels_last))
