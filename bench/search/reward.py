"""The reward every strategy maximises, and the per-slot latency table it may use.

Official (EAN_search.py): R = top1_percent + 2 * (fraction of slots off) - 54.
Ours, off by default: a measured-latency term, R -= w * (time the mask's SAMs add / time
of the SAM-free network), from a table of each slot's SAM time measured on the device the
search runs on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.cost.table import measure_latencies
from bench.models.resnet import SlotResNet

__all__ = ["Reward", "measure_slot_latency"]


@dataclass(frozen=True)
class Reward:
    """R(mask, top1) = top1 + sparsity_weight * off_fraction - offset - latency term."""

    offset: float = 54.0
    sparsity_weight: float = 2.0
    latency_weight: float = 0.0
    slot_latency_ms: tuple[float, ...] | None = None
    base_latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.latency_weight > 0 and (self.slot_latency_ms is None or not self.base_latency_ms):
            raise ValueError("a latency term needs slot_latency_ms and base_latency_ms")

    def latency_fraction(self, mask: Sequence[int]) -> float:
        """Time the mask's SAMs add, as a fraction of the SAM-free network's time."""
        if self.slot_latency_ms is None or not self.base_latency_ms:
            return 0.0
        added = sum(t for t, b in zip(self.slot_latency_ms, mask) if b)
        return added / self.base_latency_ms

    def parts(self, mask: Sequence[int], top1: float) -> dict[str, float]:
        """The reward and its terms (for the episode log)."""
        off = 1.0 - sum(mask) / len(mask)
        out = {"off_fraction": off, "reward": top1 + self.sparsity_weight * off - self.offset}
        if self.latency_weight > 0:
            frac = self.latency_fraction(mask)
            out["latency_fraction"] = frac
            out["reward"] -= self.latency_weight * frac
        return out

    def __call__(self, mask: Sequence[int], top1: float) -> float:
        return self.parts(mask, top1)["reward"]


class _OwnInput(nn.Module):
    """Runs `fn` on a stored input, so differently shaped slots share one timing loop."""

    def __init__(self, module: nn.Module, x: torch.Tensor, stateful: bool) -> None:
        super().__init__()
        self.module = module
        self.x = x
        self.stateful = stateful

    def forward(self, _ignored: torch.Tensor) -> torch.Tensor:
        return self.module(self.x, {}) if self.stateful else self.module(self.x)


@torch.no_grad()
def measure_slot_latency(
    net: SlotResNet,
    input_shape: Sequence[int],
    *,
    warmup: int = 5,
    repeats: int = 20,
) -> dict[str, Any]:
    """Median ms of each slot's SAM call at its feature shape, and of the SAM-free network.

    Every slot and the backbone are timed round-robin (bench.cost.table.measure_latencies), so
    load drifts hit them alike. A stateful SAM (DIA) is timed as a stage's first call.
    Returns {"slot_ms": [...], "base_ms": float, "input_shape": [...]}; the mask is restored.
    """
    device = next(net.parameters()).device
    x = torch.randn(*input_shape, device=device)
    blocks = net.blocks()
    shapes: list[torch.Size] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: shapes.append(out.shape)) for b in blocks]
    old_mask, was_training = net.mask, net.training
    try:
        net.eval()
        net.set_mask([0] * len(blocks))
        net(x)
    finally:
        for h in hooks:
            h.remove()
    timed: dict[str, nn.Module] = {"base": net}
    for i, (blk, shape) in enumerate(zip(blocks, shapes)):
        sam = blk.attention()
        if sam is not None:
            feat = torch.randn(*shape, device=device)
            timed[f"slot{i}"] = _OwnInput(sam, feat, getattr(sam, "stateful", False)).eval()
    try:
        ms = measure_latencies(timed, x, warmup=warmup, repeats=repeats)
    finally:
        net.set_mask(old_mask)
        net.train(was_training)
    return {
        "slot_ms": [ms.get(f"slot{i}", 0.0) for i in range(len(blocks))],
        "base_ms": ms["base"],
        "input_shape": list(input_shape),
    }
