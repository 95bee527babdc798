"""Inference cost of a network: parameters, FLOPs and measured latency."""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Cost:
    """Parameters split into backbone and SAMs; FLOPs as torch's flop counter reports them
    (2 per multiply-add; papers' "GFLOPs" for ResNets are multiply-adds, i.e. gmacs)."""

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
    """Total FLOPs of one forward pass (convolutions and matmuls; elementwise ops such
    as a SAM's gating multiply are not counted by torch's flop counter)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu {cpu} ({torch.get_num_threads()} threads)"


@torch.inference_mode()
def measure_latencies(
    models: dict[str, nn.Module], x: torch.Tensor, *, warmup: int = 5, repeats: int = 20
) -> dict[str, float]:
    """Median forward time (ms) of each model, after warm-up.

    The models are timed round-robin, one pass each per round, so that drifts in machine
    load hit all of them alike and their ratios stay meaningful.
    """
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        for m in models.values():
            m(x)
    sync()
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):
        for k, m in models.items():
            t0 = time.perf_counter()
            m(x)
            sync()
            times[k].append((time.perf_counter() - t0) * 1e3)
    for k, m in models.items():
        m.train(modes[k])
    return {k: statistics.median(v) for k, v in times.items()}


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
    several models measured side by side."""
    device = torch.device(device)
    x = torch.randn(*input_shape, device=device)
    models = {k: m.to(device) for k, m in models.items()}
    ms = measure_latencies(models, x, warmup=warmup, repeats=repeats) if latency else {}
    out = {}
    for k, m in models.items():
        total, sams = count_params(m)
        out[k] = Cost(
            params_total=total,
            params_sams=sams,
            params_backbone=total - sams,
            flops=count_flops(m, x),
            input_shape=tuple(input_shape),
            latency_ms=ms.get(k),
            latency_device=device_name(device) if latency else None,
        )
    return out


def measure_cost(model: nn.Module, input_shape: tuple[int, ...], **kwargs) -> Cost:
    """`measure_costs` for one model."""
    return measure_costs({"model": model}, input_shape, **kwargs)["model"]
