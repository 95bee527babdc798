"""The training loop: SGD + schedule, per-epoch eval, best/latest checkpoints, exact resume.

Reproducibility contract: with the same hparams, a run that is stopped anywhere (a kill
included) and resumed ends with the same weights and metrics as an uninterrupted one (bit
for bit on CPU; on CUDA up to kernel nondeterminism). latest.pt is written at every epoch
end and, inside an epoch, every `CheckpointEvery` (default 10 minutes: a kill loses
minutes, not an epoch). Exactness rests on four things:
  * data order is a pure function of (seed, epoch): a DistributedSampler seeded with the
    hparam seed (also when single-process, as one replica) and a DataLoader generator
    re-seeded from (seed, epoch) each epoch; a resumed epoch skips the batches already
    trained by index, without loading them;
  * augmentation randomness: without workers it comes from the global RNGs below; with
    workers each sample is drawn with its own seed, a pure function of (seed, epoch,
    index) (bench.engine.batches), so no worker state needs saving;
  * every global RNG (python, numpy, torch CPU/CUDA) of every rank is checkpointed with
    the optimizer, AMP scaler and the epoch's partial sums, and restored on resume; a
    fresh run seeds them all from `hp.seed`;
  * the lr is a pure function of the global step.
Every rank seeds its RNGs alike, so per-iteration random choices inside the model (a
supernet's mask) agree across ranks, as one process on the whole batch would draw them.
A loss that is not finite stops the run (`Diverged`) at the next checkpoint or epoch end,
before anything of it is saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from bench.engine.batches import EpochBatches, SeededSamples
from bench.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from bench.engine.checkpoint_interval import CheckpointEvery, checkpoint_every
from bench.engine.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    broadcast_object,
    dist_info,
    wrap_ddp,
)
from bench.engine.hparams import TrainHParams, check_batch_split
from bench.engine.rundir import BEST_FILE, LATEST_FILE, METRICS_FILE, PREVIOUS_FILE, hash_of
from bench.engine.schedule import LRSchedule, build_optimizer
from bench.util.errors import BenchError
from bench.util.faults import kill_point
from bench.util.io import append_jsonl, atomic_write_text, keep_previous
from bench.util.progress import show_progress

__all__ = [
    "Diverged",
    "Objective",
    "epoch_seed",
    "EvalLoaders",
    "evaluate",
    "evaluate_sums",
    "train",
    "training_data",
]

Log = Callable[[str], None]
_log = logging.getLogger(__name__)
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_EVAL_SUBSET_SEED = 20240607  # which items --eval-limit keeps: the same in every run
_SYNC_EVERY = 8  # under torchrun, ranks agree on a time-based checkpoint every 8 steps


class Diverged(BenchError):
    """The training loss became NaN or infinite: the run failed (nothing of it is saved)."""


def epoch_seed(seed: int, epoch: int, stream: str = "loader") -> int:
    """A 63-bit seed derived from (stream, seed, epoch): independent streams per epoch."""
    digest = hashlib.sha256(f"{stream}:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _xy(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Sequence) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError("datasets must yield (input, target, ...) tuples")


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    if channels_last and x.ndim == 4:
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=True)


def _autocast(
    device: torch.device, amp_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _on(value: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """`value` as a scalar of `like`'s dtype and device; a Python number is filled there
    (no host-to-device copy, so no sync per batch)."""
    if isinstance(value, torch.Tensor):
        return value.to(like.device, like.dtype)
    return torch.full((), value, dtype=like.dtype, device=like.device)


def eval_subset(dataset: Dataset, limit: int) -> Dataset:
    """`limit` items of `dataset` (0 or more than it has: all), the same ones in every run:
    a seeded choice, kept in dataset order. Part of the data protocol, not of a run's seed."""
    n = len(dataset)  # type: ignore[arg-type]
    if limit <= 0 or limit >= n:
        return dataset
    idx = np.sort(np.random.default_rng(_EVAL_SUBSET_SEED).permutation(n)[:limit])
    return Subset(dataset, idx.tolist())


class EvalLoaders:
    """A run's eval DataLoaders, each built at its set's first evaluation and kept: with
    workers they stay alive from one evaluation to the next (persistent), as the training
    loader's live across epochs. Eval data draws nothing at random (eval transforms; whole
    crowd images), so a worker's state never shows in a batch."""

    def __init__(self, persistent: bool = True) -> None:
        self.persistent = persistent
        self._made: dict[tuple, tuple[Dataset, DataLoader]] = {}

    def get(self, dataset: Dataset, shard: tuple[int, int] | None, batch_size: int,
            num_workers: int, pin: bool) -> DataLoader:  # fmt: skip
        """The loader of `dataset` (this rank's strided shard of it when given)."""
        key = (id(dataset), shard, batch_size, num_workers, pin)
        made = self._made.get(key)
        if made is not None and made[0] is dataset:
            return made[1]
        data = (
            dataset if shard is None else Subset(dataset, range(shard[0], len(dataset), shard[1]))
        )  # type: ignore[arg-type]
        loader = DataLoader(
            data,
            batch_size=batch_size,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=pin,
            persistent_workers=self.persistent and num_workers > 0,
            # An explicit generator: otherwise each iterator draws a worker base seed from
            # the global torch RNG and evaluation would shift the training random stream.
            generator=torch.Generator().manual_seed(0),
        )
        if self.persistent:
            self._made[key] = (dataset, loader)
        return loader

    def close(self) -> None:
        """Stop the kept loaders' workers."""
        for _, loader in self._made.values():
            it = getattr(loader, "_iterator", None)
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
        self._made.clear()


@torch.no_grad()
def evaluate_sums(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device,
    score: Callable[[torch.Tensor, Any], Sequence[torch.Tensor | float]],
    size: int,
    *,
    batch_size: int,
    num_workers: int = 0,
    distributed: bool | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool | None = False,
    loaders: EvalLoaders | None = None,
) -> list[float]:
    """The sums over `dataset` of `score(output, batch)` (`size` values per batch, float64).

    The one evaluation loop of every task: eval mode (restored after), no shuffling, the
    input (a batch's first item) on `device` under autocast. distributed (default: whether
    a process group is active): each rank scores a strided shard and the sums are
    all-reduced, so the result equals the single-process one; every rank must call it then.
    `progress`: a bar on stderr (None: show_progress decides; rank 0 only).
    `loaders`: the run's EvalLoaders (default: a loader for this call only).
    """
    info = dist_info()
    shard = info.enabled if distributed is None else distributed and info.enabled
    loader = (loaders or EvalLoaders(persistent=False)).get(
        dataset, (info.rank, info.world_size) if shard else None, batch_size, num_workers,
        device.type == "cuda",
    )  # fmt: skip
    was_training = model.training
    model.eval()
    # float64 sums: counts stay exact and the reduction order barely matters.
    sums = torch.zeros(size, dtype=torch.float64, device=device)
    bar = info.is_main and show_progress(progress)
    try:
        for batch in tqdm(loader, desc="eval", disable=not bar, leave=False, file=sys.stderr):
            x = _to(_xy(batch)[0], device, channels_last)
            with _autocast(device, amp_dtype):
                out = model(x)
            sums += torch.stack([_on(v, sums) for v in score(out, batch)])
    finally:
        model.train(was_training)
    if shard:
        all_reduce_sum(sums)
    return sums.tolist()


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device | str,
    batch_size: int = 256,
    *,
    num_workers: int = 0,
    distributed: bool | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool | None = False,
    loaders: EvalLoaders | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 accuracy (percent) and mean cross-entropy of `model` on `dataset`.

    Returns {"top1", "top5", "loss", "n"}; top5 is None with fewer than 5 classes.
    Sharding under torchrun, `progress` and `loaders` as in `evaluate_sums`. Restores the
    train mode.
    """
    device = torch.device(device)

    def score(logits: torch.Tensor, batch: Any) -> list[torch.Tensor | float]:
        y = _xy(batch)[1].to(device, non_blocking=True)
        logits = logits.float()
        classes = logits.shape[1]
        hit = logits.topk(min(5, classes), dim=1).indices.eq(y[:, None])
        loss = F.cross_entropy(logits, y, reduction="sum")
        return [loss, hit[:, :1].sum(), hit.sum(), float(len(y)), float(classes >= 5)]

    loss, c1, c5, n, has5 = evaluate_sums(
        model, dataset, device, score, 5, batch_size=batch_size, num_workers=num_workers,
        distributed=distributed, amp_dtype=amp_dtype, channels_last=channels_last,
        progress=progress, loaders=loaders,
    )  # fmt: skip
    if n == 0:
        raise BenchError("cannot evaluate on an empty dataset")
    return {
        "top1": 100.0 * c1 / n,
        "top5": 100.0 * c5 / n if has5 > 0 else None,
        "loss": loss / n,
        "n": int(n),
    }


def _fmt(metrics: Mapping[str, Any]) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float) and k != "n")


@dataclass(frozen=True)
class Objective:
    """What a task trains for: its loss, its evaluation and the metric that selects.

    The default is classification (cross-entropy, top-1/top-5). Dense tasks pass their
    own loss and evaluate function (same signature as `evaluate`, `progress` included).
    """

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    evaluate: Callable[..., dict[str, Any]] = evaluate
    metric: str = "top1"
    higher_is_better: bool = True
    train_accuracy: bool = True  # report train top-1 (argmax vs label)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


# ---- one run: what it is made of, and where it stands ------------------------------------


@dataclass
class _Run:
    """Everything fixed for one run of `train`."""

    model: nn.Module
    hp: TrainHParams
    info: DistInfo
    device: torch.device
    objective: Objective
    eval_sets: Mapping[str, Dataset]
    select_on: str | None
    run_dir: Path
    say: Log
    show_bar: bool
    every: CheckpointEvery
    before_step: Callable[[int], None] | None
    amp_dtype: torch.dtype | None
    channels_last: bool
    sampler: DistributedSampler
    batches: EpochBatches
    loader_gen: torch.Generator
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler | None
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    net: nn.Module | None = None  # DDP/compiled wrapper, set once resumed
    eval_loaders: EvalLoaders = field(default_factory=EvalLoaders)  # built once per run

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batches)

    def path(self, name: str) -> Path:
        return self.run_dir / name


@dataclass
class _Progress:
    """Where a run stands: what latest.pt saves besides the model and optimizer."""

    epoch: int = 0  # finished epochs (= the epoch now running, 0-based)
    batch: int = 0  # batches of the running epoch already trained
    step: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # this rank's, so far
    epoch_time: float = 0.0  # seconds of the running epoch spent in earlier segments
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    wall: float = 0.0
    resumed_from: int | None = None
    lr: float = 0.0


def training_data(
    train_set: Dataset, hp: TrainHParams, info: DistInfo, cuda: bool
) -> dict[str, Any]:
    """The sampler, batches and loader: data order a pure function of (seed, epoch).

    A dataset with `__getitems__` / `load_batch` reads each batch at once (see
    bench.engine.batches); the loader is the same either way.
    """
    check_batch_split(hp.batch_size, info.world_size)
    per_rank_batch = hp.batch_size // info.world_size
    sampler = DistributedSampler(
        train_set,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=True,
        seed=hp.seed,
        drop_last=False,
    )
    # A one-sample last batch would break BatchNorm in train mode: drop just that case.
    drop_last = len(sampler) % per_rank_batch == 1 and len(sampler) > 1
    seeded = hp.num_workers > 0
    batches = EpochBatches(sampler, per_rank_batch, drop_last, seeded)
    if len(batches) == 0:
        raise BenchError("the training set is empty")
    loader_gen = torch.Generator()
    loader = DataLoader(
        SeededSamples(train_set) if seeded else train_set,
        batch_sampler=batches,
        num_workers=hp.num_workers,
        pin_memory=cuda,
        generator=loader_gen,
        # Workers live across epochs (no respawn per epoch): every sample is drawn with its
        # own seed (SeededSamples), and the batches are cut in this process, so a worker's
        # state never shows in what it returns.
        persistent_workers=seeded,
    )
    return {"sampler": sampler, "batches": batches, "loader_gen": loader_gen, "loader": loader}


def _setup(
    model: nn.Module,
    train_set: Dataset,
    hp: TrainHParams,
    device: torch.device,
    info: DistInfo,
) -> dict[str, Any]:
    """Device placement, the data loader, optimizer, schedule and AMP scaler."""
    cuda = device.type == "cuda"
    # CPU autocast runs bf16 and fp16 too (slowly without AMX): the same code path as CUDA.
    amp_dtype = _AMP_DTYPES[hp.amp_dtype] if hp.amp else None
    channels_last = hp.channels_last  # CPU too: oneDNN's channels-last convolutions
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    data = training_data(train_set, hp, info, cuda)
    optimizer = build_optimizer(model, hp)
    return {
        **data,
        "amp_dtype": amp_dtype,
        "channels_last": channels_last,
        "optimizer": optimizer,
        "schedule": LRSchedule(optimizer, hp, len(data["batches"])),
        "scaler": torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None,
    }


# ---- start or resume ---------------------------------------------------------------------


def _start(run: _Run) -> _Progress:
    """A fresh run: seed every RNG, clear what an earlier attempt left."""
    seed_everything(run.hp.seed)
    if run.info.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        for name in (METRICS_FILE, BEST_FILE, PREVIOUS_FILE):
            run.path(name).unlink(missing_ok=True)
    return _Progress()


def _resume(run: _Run) -> _Progress | None:
    """Restore everything latest.pt holds (None: there is none, start fresh)."""
    latest, info = run.path(LATEST_FILE), run.info
    # Rank 0 decides so that all ranks agree even if the file appears mid-way.
    if not broadcast_object(latest.is_file() if info.is_main else None):
        return None
    ckpt = load_checkpoint(latest)
    if TrainHParams.from_dict(ckpt["hparams"]) != run.hp:
        raise BenchError(f"{latest} was written with different hparams; use a new run dir")
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    try:
        run.schedule.load_state_dict(ckpt["schedule"])
    except ValueError as e:
        raise BenchError(f"cannot resume {latest}: {e}") from None
    if run.scaler is not None and ckpt.get("scaler"):
        run.scaler.load_state_dict(ckpt["scaler"])
    rng, partial = ckpt["rng"], ckpt.get("partial")
    same_shape = len(rng) == info.world_size
    if partial and not same_shape:
        raise BenchError(
            f"{latest} was written mid-epoch by {len(rng)} processes; resume it "
            f"with {len(rng)}, not {info.world_size}"
        )
    if not same_shape:
        run.say(f"note: resuming {len(rng)}-process RNG state on {info.world_size} processes")
    restore_rng_state(rng[info.rank] if same_shape else rng[0])
    prog = _Progress(
        epoch=ckpt["epoch"],
        batch=ckpt.get("batch", 0),
        step=ckpt["step"],
        history=ckpt["history"],
        best=ckpt["best"],
        wall=ckpt["wall_time_s"],
        resumed_from=ckpt["epoch"],
    )
    if partial:
        prog.sums, prog.epoch_time = list(partial["sums"][info.rank]), partial["time_s"]
    if info.is_main:
        # The checkpoint is the truth: drop a metrics line whose checkpoint never landed.
        atomic_write_text(run.path(METRICS_FILE), "".join(_jsonl_line(r) for r in prog.history))
    at = f" batch {prog.batch}/{run.steps_per_epoch}" if prog.batch else ""
    run.say(f"resuming {run.run_dir} at epoch {prog.epoch}/{run.hp.epochs}{at} (step {prog.step})")
    return prog


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write (a full disk) names the file; atomic writes leave the previous one."""
    try:
        yield
    except OSError as e:
        raise BenchError(f"cannot write {path}: {e.strerror or e} (the previous "
                         f"{path.name}, if any, is intact)") from e  # fmt: skip


def _save_latest(run: _Run, prog: _Progress, partial: dict[str, Any] | None) -> None:
    """latest.pt: the resume point (every rank takes part: the RNG states are gathered)."""
    rng_states = all_gather_object(capture_rng_state())
    if not run.info.is_main:
        return
    with _writing(run.path(LATEST_FILE)):
        # The resume point before this one stays as previous.pt: a fall-back if this one is
        # ever damaged (bench runs check --repair).
        keep_previous(run.path(LATEST_FILE), run.path(PREVIOUS_FILE))
        _save_latest_here(run, prog, partial, rng_states)


def _save_latest_here(run: _Run, prog: _Progress, partial: dict[str, Any] | None,
                      rng_states: list[Any]) -> None:  # fmt: skip
    save_checkpoint(
        run.path(LATEST_FILE),
        {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "schedule": run.schedule.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "rng": rng_states,
            "epoch": prog.epoch,
            "batch": prog.batch,
            "partial": partial,
            "step": prog.step,
            "history": prog.history,
            "best": prog.best,
            "wall_time_s": prog.wall,
            "hparams": run.hp.to_dict(),
            "world_size": run.info.world_size,
            "run_hash": hash_of(run.run_dir),
        },
    )


# ---- one epoch -----------------------------------------------------------------------------


def _step(run: _Run, batch: Any, step: int) -> torch.Tensor:
    """One optimizer step; returns (loss * n, correct, n) of the batch as float64."""
    assert run.net is not None
    x, y = _xy(batch)
    x, y = _to(x, run.device, run.channels_last), y.to(run.device, non_blocking=True)
    if run.before_step is not None:
        run.before_step(step)
    with _autocast(run.device, run.amp_dtype):
        out = run.net(x)
        loss = run.criterion(out.float(), y)
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        run.optimizer.step()
    with torch.no_grad():
        # Filled on the device (a kernel argument): a tensor from host memory would be a
        # copy, and a host sync, per step. The sums are read at logging points only.
        n = torch.full((), float(len(y)), dtype=torch.float64, device=run.device)
        if run.objective.train_accuracy:
            correct = out.argmax(1).eq(y).sum().double()
        else:
            correct = torch.zeros((), dtype=torch.float64, device=run.device)
        return torch.stack([loss.detach().double() * n, correct, n])


def _due(run: _Run, prog: _Progress, since_s: float) -> bool:
    """Whether to checkpoint now, inside the epoch (all ranks agree)."""
    if prog.batch >= run.steps_per_epoch:
        return False  # the epoch end checkpoints anyway
    every = run.every
    if every.batches is not None and prog.batch % every.batches == 0:
        return True
    if every.seconds is None:
        return False
    if not run.info.enabled:
        return since_s >= every.seconds
    if prog.step % _SYNC_EVERY:
        return False
    flag = torch.tensor([float(since_s >= every.seconds)], device=run.device)
    return all_reduce_sum(flag).item() > 0


def _check_finite(loss_sum: float, prog: _Progress) -> None:
    if not math.isfinite(loss_sum):
        # Nothing useful can follow, and NaN is not JSON: stop before writing anything.
        raise Diverged(
            f"training diverged in epoch {prog.epoch + 1} by step {prog.step} "
            f"(loss {loss_sum}); lower the lr?"
        )


def _checkpoint_mid_epoch(run: _Run, prog: _Progress, sums: torch.Tensor, t0: float) -> None:
    every_rank = all_gather_object(sums.tolist())
    _check_finite(sum(s[0] for s in every_rank), prog)
    partial = {"sums": every_rank, "time_s": prog.epoch_time + time.perf_counter() - t0}
    _save_latest(run, prog, partial)


def _train_epoch(run: _Run, prog: _Progress) -> tuple[torch.Tensor, float]:
    """Train the running epoch from `prog.batch` on; returns its summed (loss * n, correct,
    n) over this rank and its wall time, checkpointing inside it when due."""
    assert run.net is not None
    t0 = last = time.perf_counter()
    epoch, hp = prog.epoch, run.hp
    run.sampler.set_epoch(epoch)
    run.loader_gen.manual_seed(epoch_seed(hp.seed, epoch))
    run.batches.key, run.batches.start = epoch_seed(hp.seed, epoch, "sample"), prog.batch
    run.net.train()
    sums = torch.tensor(prog.sums, dtype=torch.float64, device=run.device)
    bar = tqdm(
        run.loader,
        desc=f"epoch {epoch + 1}/{hp.epochs}",
        total=run.steps_per_epoch,
        initial=prog.batch,
        disable=not run.show_bar,
        leave=False,
        dynamic_ncols=True,
    )
    for batch in bar:
        prog.lr = run.schedule.apply(prog.step)
        sums += _step(run, batch, prog.step)
        prog.step, prog.batch = prog.step + 1, prog.batch + 1
        kill_point("train.step")
        if run.show_bar and (prog.batch % 10 == 1 or prog.batch == run.steps_per_epoch):
            bar.set_postfix(loss=f"{sums[0].item() / sums[2].item():.3f}", lr=f"{prog.lr:.4g}")
        if _due(run, prog, time.perf_counter() - last):
            _checkpoint_mid_epoch(run, prog, sums, t0)
            last = time.perf_counter()
    bar.close()
    return sums, prog.epoch_time + time.perf_counter() - t0


# ---- the end of an epoch -------------------------------------------------------------------


def _evaluate_all(run: _Run) -> dict[str, dict[str, Any]]:
    return {
        name: run.objective.evaluate(
            run.model,
            ds,
            run.device,
            run.hp.eval_batch_size,
            num_workers=run.hp.num_workers,
            distributed=run.info.enabled,
            amp_dtype=run.amp_dtype,
            channels_last=run.channels_last,
            progress=run.show_bar,
            loaders=run.eval_loaders,
        )
        for name, ds in run.eval_sets.items()
    }


def _select(run: _Run, prog: _Progress, evals: dict[str, dict[str, Any]]) -> bool:
    """Update the best epoch on the selection split; whether this epoch is it (an epoch
    without evaluation never is)."""
    if run.select_on is None or run.select_on not in evals:
        return False
    metric = run.objective.metric
    score = evals[run.select_on][metric]
    # Ties keep the earlier epoch.
    if prog.best is not None and not run.objective.better(score, prog.best["score"]):
        return False
    prog.best = {
        "epoch": prog.epoch,
        "on": run.select_on,
        "metric": metric,
        "score": score,
        metric: score,
        "metrics": evals,
    }
    return True


def _end_epoch(run: _Run, prog: _Progress, sums: torch.Tensor, t0: float, dt: float) -> None:
    """Reduce the epoch's sums, evaluate, select, checkpoint, log."""
    broadcast_buffers(run.model)  # one set of BN running stats for eval and the checkpoint
    all_reduce_sum(sums)
    loss_sum, correct_sum, n_sum = sums.tolist()
    _check_finite(loss_sum, prog)
    train_metrics = {"loss": loss_sum / n_sum, "n": int(n_sum)}
    if run.objective.train_accuracy:
        train_metrics["top1"] = 100.0 * correct_sum / n_sum
    done = prog.epoch + 1
    due = done == run.hp.epochs or done % run.hp.eval_every == 0
    evals = _evaluate_all(run) if due else {}
    dt += time.perf_counter() - t0
    prog.epoch, prog.batch, prog.sums, prog.epoch_time = prog.epoch + 1, 0, [0.0] * 3, 0.0
    prog.wall += dt
    record = {
        "epoch": prog.epoch,
        "step": prog.step,
        "lr": prog.lr,
        "train": train_metrics,
        "eval": evals,
        "time_s": dt,
    }
    prog.history.append(record)
    improved = _select(run, prog, evals)
    if improved and run.info.is_main:
        best = {"model": run.model.state_dict(), "epoch": prog.epoch,
                "select_on": run.select_on, "metrics": evals,
                "run_hash": hash_of(run.run_dir)}  # fmt: skip
        with _writing(run.path(BEST_FILE)):
            save_checkpoint(run.path(BEST_FILE), best)
    _save_latest(run, prog, None)  # every rank's RNG, at the very end of the epoch
    if run.info.is_main:
        with _writing(run.path(METRICS_FILE)):
            append_jsonl(run.path(METRICS_FILE), record)
    evals_text = " | ".join(f"{k} {_fmt(v)}" for k, v in evals.items())
    run.say(
        f"epoch {prog.epoch}/{run.hp.epochs} step {prog.step} lr {prog.lr:.4g} "
        f"train {_fmt(train_metrics)}"
        + (f" | {evals_text}" if evals_text else "")
        + f" | {dt:.1f}s"
    )


def _result(run: _Run, prog: _Progress, stopped: bool) -> dict[str, Any]:
    done, history, best = len(prog.history), prog.history, prog.best
    return {
        "complete": done >= run.hp.epochs and not stopped,
        "epochs": done,
        "steps": prog.step,
        "steps_per_epoch": run.steps_per_epoch,
        "world_size": run.info.world_size,
        "wall_time_s": prog.wall,
        "final": history[-1]["eval"] if history else {},
        "final_train": history[-1]["train"] if history else {},
        "best": best,
        "history": history,
        "resumed_from": prog.resumed_from,
        "run_dir": str(run.run_dir),
        "latest_checkpoint": str(run.path(LATEST_FILE)),
        "best_checkpoint": str(run.path(BEST_FILE)) if best is not None else None,
    }


def train(
    model: nn.Module,
    train_set: Dataset,
    eval_sets: Mapping[str, Dataset],
    hp: TrainHParams,
    run_dir: str | Path,
    device: torch.device | str,
    *,
    select_on: str | None,
    log: Log | None = None,
    stop_after_epoch: int | None = None,
    find_unused_parameters: bool = False,
    progress: bool | None = None,
    objective: Objective | None = None,
    before_step: Callable[[int], None] | None = None,
    checkpoint: CheckpointEvery | None = None,
) -> dict[str, Any]:
    """Train `model` in place for `hp.epochs` epochs, resuming from run_dir/latest.pt.

    eval_sets are scored every epoch; best.pt keeps the weights of the epoch with the best
    top-1 on `eval_sets[select_on]` (a held-out split, never test; None: no best.pt).
    Rank 0 writes metrics.jsonl, latest.pt and best.pt into `run_dir`; under torchrun all
    ranks call this with the same (shared) `run_dir`, and `hp.batch_size` is the global
    batch. `stop_after_epoch` stops after that many epochs, as a kill would (the result
    then says complete=False). The caller writes result.json from the returned dict:
    complete, epochs, steps, steps_per_epoch, world_size, wall_time_s (summed over every
    segment of a resumed run), final (eval metrics of the last epoch), final_train, best
    ({epoch, on, top1, metrics} or None), history, resumed_from, and the checkpoint paths.

    `objective` swaps the loss, evaluation and selection metric (default classification);
    `before_step(step)` runs before every optimizer step (a supernet samples its mask
    there; any randomness it draws from torch's RNG is restored on resume). `checkpoint`:
    when to save inside an epoch (default: `checkpoint_every()`, from the environment).
    Raises `Diverged` when the loss stops being finite.
    """
    objective, device, info = objective or Objective(), torch.device(device), dist_info()
    say: Log = (log or _log.info) if info.is_main else (lambda _msg: None)
    if select_on is not None and select_on not in eval_sets:
        raise BenchError(f"select_on {select_on!r} is not an eval set ({', '.join(eval_sets)})")
    if hp.batch_size % info.world_size:
        raise BenchError(
            f"batch_size {hp.batch_size} does not split over {info.world_size} processes"
        )
    criterion = objective.loss or nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
    run = _Run(
        model,
        hp,
        info,
        device,
        objective,
        {name: eval_subset(ds, hp.eval_limit) for name, ds in eval_sets.items()},
        select_on,
        Path(run_dir),
        say,
        info.is_main and show_progress(progress),
        checkpoint or checkpoint_every(),
        before_step,
        criterion=criterion,
        **_setup(model, train_set, hp, device, info),
    )
    prog = _resume(run) or _start(run)
    net = wrap_ddp(model, device, find_unused_parameters=find_unused_parameters)
    run.net = torch.compile(net) if hp.compile else net
    stopped = False
    try:
        while prog.epoch < hp.epochs:
            sums, dt = _train_epoch(run, prog)
            _end_epoch(run, prog, sums, time.perf_counter(), dt)
            if stop_after_epoch is not None and stop_after_epoch <= prog.epoch < hp.epochs:
                stopped = True
                break
    finally:
        run.eval_loaders.close()
    barrier()  # files are complete on every rank's return
    return _result(run, prog, stopped)


def _jsonl_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
