"""Device selection: the one place that turns `--device` into a torch.device and starts it.

`select_device(name)` is called by train, search and transfer before their process group
and before their run directory is planned, so that (1) the process group's backend follows
the device (gloo for cpu, nccl for cuda), (2) under torchrun every rank takes its own GPU,
and (3) the environment recorded in hparams.json names the GPU the run used.

Names: "auto" (the default: cuda when available, else cpu), "cpu", "cuda" (this process's
GPU: cuda:LOCAL_RANK under torchrun, cuda:0 otherwise) and "cuda:N" (GPU N; under torchrun
with several processes only N = LOCAL_RANK, since one N for every rank would put them all on
one GPU). A resolved name resolves to itself, so callers may pass either. The device is
not part of any run hash: "auto" that resolves to cpu names the same runs as "cpu".

`deterministic=True` sets torch's deterministic algorithms, cuDNN's flags and
CUBLAS_WORKSPACE_CONFIG before CUDA starts (cuBLAS reads that variable only then).
"""

from __future__ import annotations

import logging
import os
import re

import torch

from bench.util.errors import BenchError

__all__ = [
    "AUTO",
    "CUBLAS_WORKSPACE",
    "DEVICE_PATTERN",
    "local_rank",
    "resolve_name",
    "select_device",
    "set_deterministic",
]

_log = logging.getLogger(__name__)
AUTO = "auto"
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
CUBLAS_WORKSPACE = ":4096:8"  # the setting NVIDIA documents for deterministic cuBLAS


def local_rank() -> tuple[int, int]:
    """(LOCAL_RANK, WORLD_SIZE) from torchrun's environment variables ((0, 1) without)."""
    return int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def resolve_name(name: str = AUTO, *, cuda_available: bool | None = None) -> str:
    """The concrete device `name` stands for here ("cpu" or "cuda:N"); BenchError if this
    machine cannot give it. Starts nothing."""
    if not DEVICE_PATTERN.fullmatch(name):
        raise BenchError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if name == AUTO:
        name = "cuda" if cuda_available else "cpu"
    if name == "cpu":
        return name
    if not cuda_available:
        raise BenchError(f"--device {name}: this machine has no CUDA; use --device cpu or auto")
    local, world = local_rank()
    if name == "cuda":
        return f"cuda:{local}"
    index, count = int(name.split(":")[1]), torch.cuda.device_count()
    if world > 1 and index != local:  # cuda:LOCAL_RANK is this process's own: allowed
        raise BenchError(
            f"--device {name} under torchrun would put all {world} processes on one GPU; "
            "use --device cuda or auto (each process takes cuda:LOCAL_RANK)"
        )
    if index >= count:
        raise BenchError(f"--device {name}: this machine has {count} CUDA device(s)")
    return name


def set_deterministic(on: bool = True) -> None:
    """torch's deterministic algorithms and cuDNN's flags; CUBLAS_WORKSPACE_CONFIG too, which
    only takes effect when set before CUDA starts (so call this first)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False if on else torch.backends.cudnn.benchmark


def select_device(name: str = AUTO, *, deterministic: bool = False) -> torch.device:
    """The device `name` stands for, made this process's current device (CUDA started), so
    that what is recorded afterwards (the environment) describes it."""
    if deterministic:
        set_deterministic(True)
    device = torch.device(resolve_name(name))
    if device.type == "cuda":
        torch.cuda.init()
        torch.cuda.set_device(device)
    _log.debug(f"device {device} (asked for {name})")
    return device
