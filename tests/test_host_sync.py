"""No host sync per training step: on CUDA every `.item()`, `.cpu()`, `.tolist()` or
`float(t)` of a device tensor waits for the GPU. The loop may read its sums at logging
points (epoch ends, checkpoints), a number of reads that must not grow with the steps.

Checked on CPU by counting those calls (patched onto torch.Tensor) over one epoch of a
supernet (a fresh mask every step, as `bench search` trains it) at two epoch lengths.
"""

from __future__ import annotations

import collections
import traceback
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from bench.engine import TrainHParams, train
from bench.engine.rundir import CheckpointEvery
from bench.models.resnet import ModelConfig, SlotResNet
from bench.search.hparams import SupernetHParams
from bench.search.supernet import MaskSampler

READS = ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "copy_")
# Tensors made from host data: on CUDA a host-to-device copy from pageable memory, which
# waits like a read does.
MAKERS = ("tensor", "as_tensor")
# The mask sampler draws its bits from torch's CPU generator and reads them there: a CPU
# tensor on any machine, never a device sync.
CPU_ONLY = {"sample_mask"}


def _data(n: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.arange(n) % 10)


def _counting(original, seen: collections.Counter):
    """`original`, counting its calls by caller (function, file:line)."""

    def counted(*a, **kw):
        frame = traceback.extract_stack(limit=2)[0]
        seen[(frame.name, f"{Path(frame.filename).name}:{frame.lineno}")] += 1
        return original(*a, **kw)

    return counted


def _reads(monkeypatch: pytest.MonkeyPatch, tmp: Path, n_train: int) -> collections.Counter:
    """Where (function, file:line) the tensor reads of one supernet epoch happen."""
    seen: collections.Counter = collections.Counter()
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, _counting(getattr(torch.Tensor, name), seen))
    for name in MAKERS:
        monkeypatch.setattr(torch, name, _counting(getattr(torch, name), seen))
    torch.manual_seed(0)
    net = SlotResNet(ModelConfig("resnet20", "se"), num_classes=10)
    hp = TrainHParams(epochs=1, batch_size=8, eval_batch_size=16, lr=0.05, warmup_epochs=0)
    try:
        train(net, _data(n_train), {"val": _data(16)}, hp, tmp, "cpu", select_on="val",
              log=lambda _m: None, before_step=MaskSampler(net, SupernetHParams()),
              checkpoint=CheckpointEvery(seconds=None))  # fmt: skip
    finally:
        monkeypatch.undo()
    return seen


def test_reads_do_not_grow_with_the_steps(monkeypatch, tmp_path: Path) -> None:
    short = _reads(monkeypatch, tmp_path / "a", 32)  # 4 steps
    long = _reads(monkeypatch, tmp_path / "b", 96)  # 12 steps
    grew = {site: (short[site], long[site]) for site in long if long[site] > short[site]}
    per_step = {site: n for site, n in grew.items() if site[0] not in CPU_ONLY}
    assert not per_step, f"tensor reads per training step: {per_step}"
    assert any(site[0] in CPU_ONLY for site in grew)  # the counter does see per-step calls
