"""Running an mmengine Runner safely and repeatably inside one process.

- `PlainCheckpointHook`: mmengine checkpoints hold HistoryBuffer objects (pickled with
  `builtins.getattr`) and numpy scalars, so with torch >= 2.6 (`weights_only=True` by
  default) the Runner cannot resume from its own checkpoints, and allow-listing `getattr`
  would make every load unsafe. The hook writes the message hub as plain tensors, lists
  and numbers, and turns it back into HistoryBuffers after loading: every checkpoint the
  suite writes loads with `weights_only=True`, and nothing is ever loaded unsafely.
- `MetricsHook` keeps the last validation metrics for the result record.
- `ExactResumeHook` makes a killed and resumed run end where an uninterrupted one ends:
  validation leaves the global RNGs as it found them, and each checkpoint carries torch's
  RNG state (restored on resume; augmentation draws numpy's, which mmengine's replay of
  the skipped batches restores) and the training time so far (wall time sums segments).
- `FiniteLossHook` stops a run whose loss is no longer finite (`Diverged`: the cell
  records the run as failed) before that iteration is checkpointed.
- `AtomicRunner` writes each checkpoint to a temporary file, fsyncs and renames it
  (bench.util.io.atomic_path): a kill mid-write never leaves a truncated iter_N.pth, and the
  resume point (`resume_point`) survives a torn `last_checkpoint` pointer.
- `run_runner` trains (resuming when asked), picks the device, and shuts the data-loader
  workers down afterwards: left alive, they stall the next Runner in the process about 5 s
  per worker.
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.engine.checkpoint import capture_rng_state, restore_rng_state
from bench.engine.distributed import all_reduce_sum, is_main_process
from bench.engine.loop import Diverged
from bench.util.errors import BenchError
from bench.util.faults import kill_point
from bench.util.io import atomic_path
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
_ITER_FILE = re.compile(r"iter_(\d+)\.pth")


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


class ExactResumeHook(Hook):
    """Bit-exact resume and the wall time of every segment (see the module docstring)."""

    priority = "LOWEST"  # after_train_iter: after the CheckpointHook has saved

    def __init__(self) -> None:
        self.before = 0.0  # training seconds of earlier segments
        self.t0 = time.perf_counter()
        self.rng: dict[str, Any] | None = None

    def wall_time_s(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def before_train(self, runner: Runner) -> None:
        self.t0 = time.perf_counter()

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch=None, outputs=None):  # noqa: ANN001
        kill_point("seg.iter")

    def before_val(self, runner: Runner) -> None:
        self.rng = capture_rng_state()

    def after_val(self, runner: Runner) -> None:
        if self.rng is not None:
            restore_rng_state(self.rng)
            self.rng = None

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        state = capture_rng_state()
        meta = checkpoint.setdefault("meta", {})
        meta["bench_rng"] = {"torch": state["torch"], "cuda": state["cuda"]}
        meta["bench_wall_time_s"] = self.wall_time_s()

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        meta = checkpoint.get("meta") or {}
        if "bench_rng" in meta:
            torch.set_rng_state(meta["bench_rng"]["torch"])
            cuda = meta["bench_rng"]["cuda"]
            if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
        self.before = float(meta.get("bench_wall_time_s", 0.0))


class FiniteLossHook(Hook):
    """Stops the run (`Diverged`) at the first NaN or infinite training loss, on every rank
    alike and before the checkpoint of that iteration is saved."""

    priority = "NORMAL"  # after_train_iter: before the CheckpointHook (VERY_LOW)

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch=None, outputs=None):  # noqa: ANN001
        loss = (outputs or {}).get("loss")
        if loss is None:
            return
        loss = torch.as_tensor(loss).detach().float().reshape(1)
        if all_reduce_sum((~torch.isfinite(loss)).float()).item():
            raise Diverged(f"training diverged at iteration {runner.iter + 1} (loss "
                           f"{loss.item()}); lower the lr?")  # fmt: skip


class AtomicRunner(Runner):
    """A Runner whose checkpoints appear whole or not at all."""

    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        if not is_main_process():
            return  # mmengine saves on rank 0 only
        with atomic_path(Path(out_dir) / filename) as tmp:
            super().save_checkpoint(str(tmp.parent), tmp.name, *args, **kwargs)


def resume_point(work_dir: str | Path) -> Path | None:
    """The checkpoint to resume from: the one `last_checkpoint` names, else (a pointer torn
    by a kill, or never written) the newest iter_N.pth; None when there is none."""
    work_dir = Path(work_dir)
    pointer = work_dir / LAST_CHECKPOINT
    named = pointer.read_text().strip() if pointer.is_file() else ""
    if named and Path(named).is_file():
        return Path(named)
    found = [
        (int(m[1]), p) for p in work_dir.glob("iter_*.pth") if (m := _ITER_FILE.fullmatch(p.name))
    ]
    return max(found)[1] if found else None


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


def run_runner(
    cfg: Any,
    *,
    device: str = "cpu",
    resume_from: Path | None = None,
    hooks: Sequence[Hook] = (),
) -> tuple[Runner, dict[str, float], float]:
    """Build a Runner from `cfg`, train (resuming from checkpoint `resume_from` if given),
    and return it with the final validation metrics and the training time of every
    segment of the run so far.

    When the last checkpoint is already at max_iters (a crash after training but before
    the record was written), it validates that checkpoint instead of training again.
    """
    cfg = cfg.copy()
    cfg.resume = resume_from is not None
    cfg.load_from = None if resume_from is None else str(resume_from)
    with mmengine_device(device), warnings.catch_warnings():
        for text in _UPSTREAM_NOISE:
            warnings.filterwarnings("ignore", message=text, category=UserWarning)
        runner = AtomicRunner.from_cfg(cfg)
        capture, exact = MetricsHook(), ExactResumeHook()
        for hook in (PlainCheckpointHook(), FiniteLossHook(), capture, exact, *hooks):
            runner.register_hook(hook)
        try:
            runner.train()
            wall = exact.wall_time_s()
            if capture.metrics is None or capture.iter != runner.iter:
                runner.val()
        finally:
            shutdown_loaders(runner)
    if capture.metrics is None:
        raise RuntimeError("validation produced no metrics")
    return runner, capture.metrics, wall
