"""Inference cost of a network: parameters, FLOPs and measured latency."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

import torch
from torch import nn

from bench.flops import flop_counter


@dataclass(frozen=True)
class Cost:
    """Parameters split into backbone and SAMs; FLOPs by `count_flops`' rules.

    Convolutions and matmuls count 2 FLOPs per multiply-add, elementwise ops (a SAM's gate,
    BN, ReLU) 1 FLOP per element (see bench.flops). `gmacs` is flops / 2e9: exact MACs for
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
    """FLOPs of one forward pass in eval mode: torch's flop counter with bench.flops' rules.

    Conv/matmul: 2 per multiply-add (torch's own formulas); elementwise ops, reductions,
    pooling, normalisation and softmax: the small per-element counts of bench.flops, so
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


def measure_latencies(
    models: dict[str, nn.Module], x: torch.Tensor, *, warmup: int = 5, repeats: int = 20
) -> dict[str, float]:
    """Median forward time (ms) of each model over exactly `repeats` interleaved rounds,
    after warm-up: `bench.cost_table.measure_session` with no early stop."""
    from bench.cost_table import measure_session  # it imports this module

    t = measure_session(models, x, warmup=warmup, min_rounds=repeats, time_cap_s=0, progress=False)
    return t.median_ms


def measure_costs(
    models: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    *,
    device: str | torch.device = "cpu",
    latency: bool = True,
    warmup: int = 5,
    repeats: int = 20,
) -> dict[str, Cost]:
    """Parameters, FLOPs at `input_shape` (N, C, H, W) and, optionally, latency, for
    several models measured side by side (`repeats` interleaved rounds, no early stop)."""
    from bench.cost_table import measure_models  # it imports this module

    timing = {"warmup": warmup, "min_rounds": repeats, "time_cap_s": 0, "progress": False}
    return measure_models(models, input_shape, device=device, latency=latency, **timing)[0]


def measure_cost(model: nn.Module, input_shape: tuple[int, ...], **kwargs) -> Cost:
    """`measure_costs` for one model."""
    return measure_costs({"model": model}, input_shape, **kwargs)["model"]
