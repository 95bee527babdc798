"""Divergence and disk faults: a loss that stops being finite fails the run (a failed
record with the reason, never a result), and a write that fails (a full disk, simulated
by making the OS calls raise ENOSPC) leaves the previous checkpoint, cache and record."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from bench.engine import TrainHParams, load_checkpoint, train
from bench.engine.loop import Diverged
from bench.engine.rundir import CheckpointEvery
from bench.util.errors import BenchError
from bench.util.io import read_json, read_jsonl


def _blobs(n: int, seed: int) -> TensorDataset:
    templates = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1234))
    y = torch.arange(n) % 4
    noise = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return TensorDataset(templates[y] + 0.7 * noise, y)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 16), nn.ReLU(), nn.Linear(16, 4))


def _train(path: Path, hp: TrainHParams, **kw):
    return train(_net(), _blobs(64, 0), {"val": _blobs(16, 1)}, hp, path, "cpu",
                 select_on="val", log=lambda _m: None, progress=False, **kw)  # fmt: skip


def _no_full_disk(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_non_finite_loss_stops_the_run_before_it_is_saved(tmp_path: Path) -> None:
    # lr 1e30 blows the weights up within a few steps; checkpoints after every batch.
    hp = TrainHParams(epochs=2, batch_size=16, lr=1e30, warmup_epochs=0)
    with pytest.raises(Diverged, match="diverged in epoch 1"):
        _train(tmp_path, hp, checkpoint=CheckpointEvery(seconds=0))
    ckpt = load_checkpoint(tmp_path / "latest.pt")  # the last finite state, not a NaN one
    assert 0 < ckpt["batch"] < 4 and ckpt["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert math.isfinite(sum(ckpt["partial"]["sums"][0]))
    assert read_jsonl(tmp_path / "metrics.jsonl") == [] and not (tmp_path / "best.pt").exists()


def test_a_diverged_cell_is_a_failed_record_not_a_result(tmp_path: Path, monkeypatch) -> None:
    from fixtures import write_fashion_mnist_idx

    from bench.runs.classify import DataOptions, train_cell
    from bench.ticket.schema import make_ticket

    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "cache"))
    data = write_fashion_mnist_idx(tmp_path / "fm", train_per_class=6, test_per_class=2)
    prov = {"kind": "baseline", "baseline": "full", "seed": 0}
    ticket = make_ticket("r20-full", "resnet20", "se", [1] * 9, prov)
    hp = TrainHParams(epochs=1, batch_size=16, lr=1e30, warmup_epochs=0)
    opts = DataOptions(data_root=data, heldout=20)
    for _ in range(2):  # never skipped as finished: a rerun tries again
        rec = train_cell(ticket, "fashion-mnist", hp, out_root=tmp_path / "out", data=opts)
        prov = rec["provenance"]
        assert prov["status"] == "failed" and "diverged" in prov["reason"]
        assert rec["result"]["value"] is None
        assert not (Path(prov["run_dir"]) / "result.json").exists()
    [path] = (tmp_path / "out" / "records").rglob("*.json")
    assert read_json(path) == rec


def test_a_full_disk_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    hp = TrainHParams(epochs=2, batch_size=16, lr=0.05, warmup_epochs=0)
    _train(tmp_path, hp, stop_after_epoch=1)
    before = (tmp_path / "latest.pt").read_bytes()
    monkeypatch.setattr(torch, "save", _no_full_disk)
    with pytest.raises(BenchError, match=r"cannot write .*latest.pt: No space left on device"):
        _train(tmp_path, hp)
    assert (tmp_path / "latest.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "latest.pt")["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    assert _train(tmp_path, hp)["complete"]  # and the run goes on once there is room


def test_a_full_disk_leaves_the_previous_density_map_and_record(
    tmp_path: Path, monkeypatch
) -> None:
    from fixtures_crowd import write_crowd_root

    from bench.runs.records import write_record
    from tasks.crowd_counting.cache import cached_density
    from tasks.crowd_counting.data import list_split
    from tasks.crowd_counting.density import DensitySpec

    sample = list_split(write_crowd_root(tmp_path / "data") / "part_B", "train")[0]
    first = cached_density(sample, DensitySpec(kernel="fixed", sigma=4.0))
    old = first.path.read_bytes()
    rec = {"setting": {"task": "t", "dataset": "d", "eval_split": "test", "head": "h"},
           "identity": {"ticket": "x", "ticket_checksum": "sha256:ab"},
           "provenance": {"seed": 0, "status": "finished"}}  # fmt: skip
    rec_path = write_record(tmp_path / "out", rec)
    monkeypatch.setattr(os, "fsync", _no_full_disk)
    with pytest.raises(BenchError, match="cannot write the density cache"):
        cached_density(sample, DensitySpec(kernel="fixed", sigma=5.0))
    with pytest.raises(OSError):
        write_record(tmp_path / "out", {**rec, "result": {"value": 2.0}})
    monkeypatch.undo()
    assert first.path.read_bytes() == old and read_json(rec_path) == rec
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.slow
def test_a_diverged_segmentation_run_is_a_failed_record(cityscapes_root: Path, tmp_path: Path):
    from fixtures_seg import random_ticket, tiny_run

    from tasks.segmentation.task import SegmentationTask

    run = tiny_run(random_ticket(), "fcn", data_root=cityscapes_root, out_root=tmp_path,
                   iters=4, lr=1e30)  # fmt: skip
    rec = SegmentationTask().run(run)
    prov = rec["provenance"]
    assert prov["status"] == "failed" and "diverged at iteration" in prov["reason"]
    run_dir = Path(prov["run_dir"])
    assert not (run_dir / "result.json").exists()
    for ckpt in run_dir.glob("iter_*.pth"):  # only finite weights were ever saved
        sd = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())
