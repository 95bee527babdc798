"""Inference cost of a network: parameters, FLOPs and measured latency."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

import torch
from torch import nn

from bench.cost.flops import flop_counter


@dataclass(frozen=True)
class Cost:
    """Parameters split into backbone and SAMs; FLOPs by `count_flops`' rules.

    Convolutions and matmuls count 2 FLOPs per multiply-add, elementwise ops (a SAM's gate,
    BN, ReLU) 1 FLOP per element (see bench.cost.flops). `gmacs` is flops / 2e9: exact MACs for
    the conv/matmul part, the nearest like-for-like unit for papers' ResNet "GFLOPs" (which
    are multiply-adds); the elementwise part enters it at half weight.
    """

    params_total: int
    params_sams: int
    params_backbone: int
    flops: int | None = None
    input_shape: tuple[int, ...] | None = None
    latency_ms: float | None = None
    latency_device: str | None = None

    @property
    def gmacs(self) -> float | None:
        return None if self.flops is None else self.flops / 2e9

    def as_dict(self) -> dict:
        d = asdict(self)
        d["gmacs"] = self.gmacs
        return d


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, in SAMs): every distinct parameter once, shared SAMs included once."""
    total = sum(p.numel() for p in model.parameters())
    sam_modules = getattr(model, "sam_modules", list)()
    seen: set[int] = set()
    sams = 0
    for m in sam_modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                sams += p.numel()
    return total, sams


@torch.no_grad()
def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass in eval mode: torch's flop counter with bench.cost.flops' rules.

    Conv/matmul: 2 per multiply-add (torch's own formulas); elementwise ops, reductions,
    pooling, normalisation and softmax: the small per-element counts of bench.cost.flops, so
    parameter-free SAMs (SimAM, SGE) and gates cost what they compute rather than 0.
    """
    was_training = model.training
    model.eval()
    with flop_counter() as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu {cpu} ({torch.get_num_threads()} threads)"
