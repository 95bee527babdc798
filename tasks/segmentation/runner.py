"""Running an mmengine Runner safely and repeatably inside one process.

- `PlainCheckpointHook`: mmengine checkpoints hold HistoryBuffer objects (pickled with
  `builtins.getattr`) and numpy scalars, so with torch >= 2.6 (`weights_only=True` by
  default) the Runner cannot resume from its own checkpoints, and allow-listing `getattr`
  would make every load unsafe. The hook writes the message hub as plain tensors, lists
  and numbers, and turns it back into HistoryBuffers after loading: every checkpoint the
  suite writes loads with `weights_only=True`, and nothing is ever loaded unsafely.
- `MetricsHook` keeps the last validation metrics for the result record.
- `run_runner` trains (resuming when asked), picks the device, and shuts the data-loader
  workers down afterwards: left alive, they stall the next Runner in the process about 5 s
  per worker.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import BenchError
from tasks.segmentation import compat

compat.ensure()

import mmengine.device.utils as _mm_device  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import HistoryBuffer  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

# Registering the backbone and metric is a side effect of importing them.
from tasks.segmentation import backbone as _backbone  # noqa: E402, F401
from tasks.segmentation import metrics as _metrics  # noqa: E402, F401

# mmseg 1.2.2 warns on every Runner about its own internals (the suite's configs build
# losses through MODELS, keep mmseg's loss default and never draw): nothing a user can act on.
_UPSTREAM_NOISE = (
    r"``build_loss`` would be deprecated",
    r"Default ``avg_non_ignore`` is False",
    r"The draw is False",
)
LAST_CHECKPOINT = "last_checkpoint"  # mmengine's pointer file in the work_dir
_BUFFER_TAG = "__history_buffer__"


def _plain(obj: Any) -> Any:
    """numpy -> Python/torch, HistoryBuffer -> tagged dict; containers recursively."""
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        return {
            _BUFFER_TAG: True,
            "log_history": torch.from_numpy(np.asarray(log, dtype=np.float64).copy()),
            "count_history": torch.from_numpy(np.asarray(count, dtype=np.int64).copy()),
            "max_length": int(obj.max_length),
        }
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _restore(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        if obj.get(_BUFFER_TAG):
            return HistoryBuffer(
                obj["log_history"].numpy(), obj["count_history"].numpy(), obj["max_length"]
            )
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_restore(v) for v in obj)
    return obj


class PlainCheckpointHook(Hook):
    """Make Runner checkpoints loadable with torch.load(weights_only=True), both ways."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        for key in ("message_hub", "meta"):
            if key in checkpoint:
                checkpoint[key] = _plain(checkpoint[key])

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        if "message_hub" in checkpoint:
            checkpoint["message_hub"] = _restore(checkpoint["message_hub"])


class MetricsHook(Hook):
    """Remembers the metrics of the latest validation (rank 0 holds the real values)."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.metrics: dict[str, float] | None = None
        self.iter: int | None = None

    def after_val_epoch(self, runner: Runner, metrics: dict | None = None) -> None:
        self.metrics = {k: float(v) for k, v in (metrics or {}).items()}
        self.iter = runner.iter


@contextlib.contextmanager
def mmengine_device(device: str) -> Iterator[None]:
    """Run mmengine on `device` ("cpu", "cuda" or "cuda:N").

    mmengine places models by a module-level device chosen at import (cuda whenever
    available) and offers no switch, so "--device cpu" on a GPU machine sets it for the
    duration of the run and restores it after.
    """
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {device}: CUDA is not available here")
    if kind not in ("cpu", "cuda"):
        raise BenchError(f"--device {device}: expected cpu, cuda or cuda:N")
    old = _mm_device.DEVICE
    _mm_device.DEVICE = kind
    try:
        if kind == "cuda" and torch.device(device).index is not None:
            torch.cuda.set_device(torch.device(device))
        yield
    finally:
        _mm_device.DEVICE = old


def shutdown_loaders(runner: Runner) -> None:
    """Stop every data-loader worker the Runner started (persistent or in an iterator)."""
    for name in ("_train_loop", "_val_loop", "_test_loop"):
        loop = getattr(runner, name, None)
        for holder in (
            getattr(loop, "dataloader_iterator", None),  # IterBasedTrainLoop's infinite iter
            getattr(loop, "dataloader", None),  # persistent workers live on the loader
        ):
            it = getattr(holder, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
                holder._iterator = None


def has_checkpoint(work_dir: str | Path) -> bool:
    """Whether the Runner left a checkpoint to resume from in `work_dir`."""
    pointer = Path(work_dir) / LAST_CHECKPOINT
    if not pointer.is_file():
        return False
    target = pointer.read_text().strip()
    return bool(target) and Path(target).is_file()


def run_runner(
    cfg: Any,
    *,
    device: str = "cpu",
    resume: bool = False,
    hooks: Sequence[Hook] = (),
) -> tuple[Runner, dict[str, float]]:
    """Build a Runner from `cfg`, train (resuming from its work_dir's last checkpoint if
    `resume`), and return it with the final validation metrics.

    When the last checkpoint is already at max_iters (a crash after training but before
    the record was written), it validates that checkpoint instead of training again.
    """
    cfg = cfg.copy()
    cfg.resume = bool(resume)
    with mmengine_device(device), warnings.catch_warnings():
        for text in _UPSTREAM_NOISE:
            warnings.filterwarnings("ignore", message=text, category=UserWarning)
        runner = Runner.from_cfg(cfg)
        capture = MetricsHook()
        runner.register_hook(PlainCheckpointHook())
        runner.register_hook(capture)
        for hook in hooks:
            runner.register_hook(hook)
        try:
            runner.train()
            if capture.metrics is None or capture.iter != runner.iter:
                runner.val()
        finally:
            shutdown_loaders(runner)
    if capture.metrics is None:
        raise RuntimeError("validation produced no metrics")
    return runner, capture.metrics
