"""torchrun helpers: init from the environment, rank-0-only writes, summed metrics, DDP.

Without torchrun (no WORLD_SIZE, or WORLD_SIZE=1) everything here degrades to the
single-process case, so callers never branch on "am I distributed".
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "all_gather_object",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "destroy_distributed",
    "dist_info",
    "free_port",
    "init_distributed",
    "is_main_process",
    "torchrun_command",
    "wrap_ddp",
]


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def dist_info() -> DistInfo:
    """This process's rank/world size (from the process group, else the environment)."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if _active():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return DistInfo(0, 1, 0)


def is_main_process() -> bool:
    return dist_info().is_main


def init_distributed(
    device: torch.device | str | None = None,
    backend: str | None = None,
    *,
    timeout: datetime.timedelta | None = None,
) -> DistInfo:
    """Join the process group described by torchrun's RANK/WORLD_SIZE/LOCAL_RANK env vars.

    No-op without them (or with WORLD_SIZE=1). The backend follows `device` (default:
    bench.engine.device.select_device("auto")): nccl for cuda, gloo for cpu. On CUDA the
    process binds to its device first, as NCCL requires.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if dist.is_initialized():
        return dist_info()
    from bench.engine.device import select_device

    device = select_device() if device is None else torch.device(device)
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"backend": backend, "rank": rank, "world_size": world}
    if timeout is not None:
        kwargs["timeout"] = timeout
    if backend == "nccl":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device
    dist.init_process_group(init_method="env://", **kwargs)
    return DistInfo(rank, world, local)


def destroy_distributed() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op single-process)."""
    if _active():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place and return it (identity single-process)."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running stats) to every rank.

    DDP broadcasts buffers only at the start of a forward, so after the last training step
    each rank holds the running stats of its own shard; evaluating or saving then would
    mix models. Call this before either.
    """
    if not _active():
        return
    for buf in model.buffers():
        dist.broadcast(buf.data, src=src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (picklable objects)."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(
    model: nn.Module, device: torch.device, *, find_unused_parameters: bool = False
) -> nn.Module:
    """DistributedDataParallel around `model` when distributed, else `model` itself.

    `find_unused_parameters=True` is needed when forward skips modules per iteration (the
    suite's supernets drop SAMs by a random mask); it costs a graph walk per step.
    """
    if not _active():
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago (for MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_command(nproc_per_node: int, argv: list[str], *, port: int | None = None) -> list[str]:
    """argv to launch `argv` (a script and its args, or ["-m", module, ...]) under torchrun
    on this machine, with a standalone rendezvous on a free localhost port."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc_per_node}",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={port or free_port()}",
        *argv,
    ]
