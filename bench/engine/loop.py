"""The training loop: SGD + schedule, per-epoch eval, best/latest checkpoints, exact resume.

Reproducibility contract: with the same hparams, a run that is stopped at an epoch end
and resumed ends with the same weights and metrics as an uninterrupted one (bit for bit
on CPU; on CUDA up to kernel nondeterminism). It rests on three things:
  * data order is a pure function of (seed, epoch): a DistributedSampler seeded with the
    hparam seed (also when single-process, as one replica) and a DataLoader generator
    re-seeded from (seed, epoch) each epoch, which fixes the worker seeds;
  * every global RNG (python, numpy, torch CPU/CUDA) of every rank is checkpointed at the
    epoch end and restored on resume; a fresh run seeds them all from `hp.seed`;
  * the lr is a pure function of the global step.
Every rank seeds its RNGs alike, so per-iteration random choices inside the model (a
supernet's mask) agree across ranks, as one process on the whole batch would draw them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm import tqdm

from bench.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from bench.engine.distributed import (
    all_gather_object,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    broadcast_object,
    dist_info,
    wrap_ddp,
)
from bench.engine.hparams import TrainHParams
from bench.engine.rundir import BEST_FILE, LATEST_FILE, METRICS_FILE
from bench.engine.schedule import LRSchedule, build_optimizer
from bench.errors import BenchError
from bench.io import append_jsonl, atomic_write_text

__all__ = ["epoch_seed", "evaluate", "train"]

Log = Callable[[str], None]
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


@torch.no_grad()
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
) -> dict[str, Any]:
    """Top-1/top-5 accuracy (percent) and mean cross-entropy of `model` on `dataset`.

    Returns {"top1", "top5", "loss", "n"}; top5 is None with fewer than 5 classes.
    distributed (default: whether a process group is active): each rank scores a strided
    shard and the sums of loss, correct and count are all-reduced, so the result equals
    the single-process one. Every rank must call it then. Restores the model's train mode.
    """
    device = torch.device(device)
    info = dist_info()
    shard = info.enabled if distributed is None else distributed and info.enabled
    data = Subset(dataset, range(info.rank, len(dataset), info.world_size)) if shard else dataset
    loader = DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        # An explicit generator: otherwise each iterator draws a worker base seed from the
        # global torch RNG and evaluation would shift the training random stream.
        generator=torch.Generator().manual_seed(0),
    )
    was_training = model.training
    model.eval()
    # float64 sums: counts stay exact and the reduction order barely matters.
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, c1, c5, n, has5
    try:
        for batch in loader:
            x, y = _xy(batch)
            x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
            with _autocast(device, amp_dtype):
                logits = model(x)
            logits = logits.float()
            classes = logits.shape[1]
            top = logits.topk(min(5, classes), dim=1).indices
            hit = top.eq(y[:, None])
            sums += torch.stack(
                [
                    F.cross_entropy(logits, y, reduction="sum").double(),
                    hit[:, :1].sum().double(),
                    hit.sum().double(),
                    torch.tensor(float(len(y)), dtype=torch.float64, device=device),
                    torch.tensor(float(classes >= 5), dtype=torch.float64, device=device),
                ]
            )
    finally:
        model.train(was_training)
    if shard:
        all_reduce_sum(sums)
    loss, c1, c5, n, has5 = sums.tolist()
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
    own loss and evaluate function (same signature as `evaluate`).
    """

    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    evaluate: Callable[..., dict[str, Any]] = evaluate
    metric: str = "top1"
    higher_is_better: bool = True
    train_accuracy: bool = True  # report train top-1 (argmax vs label)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


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
) -> dict[str, Any]:
    """Train `model` in place for `hp.epochs` epochs, resuming from run_dir/latest.pt.

    eval_sets are scored every epoch; best.pt keeps the weights of the epoch with the best
    top-1 on `eval_sets[select_on]` (a held-out split, never test; None: no best.pt).
    Rank 0 writes metrics.jsonl, latest.pt and best.pt into `run_dir`; under torchrun all
    ranks call this with the same (shared) `run_dir`, and `hp.batch_size` is the global
    batch. `stop_after_epoch` stops after that many epochs, as a kill would (the result
    then says complete=False). The caller writes result.json from the returned dict:
    complete, epochs, steps, steps_per_epoch, world_size, wall_time_s, final (eval
    metrics of the last epoch), final_train, best ({epoch, on, top1, metrics} or None),
    history, resumed_from, and the checkpoint paths.

    `objective` swaps the loss, evaluation and selection metric (default classification);
    `before_step(step)` runs before every optimizer step (a supernet samples its mask
    there; any randomness it draws from torch's RNG is restored on resume).
    """
    objective = objective or Objective()
    device = torch.device(device)
    info = dist_info()
    run_dir = Path(run_dir)
    say: Log = (log or _stderr) if info.is_main else (lambda _msg: None)
    if select_on is not None and select_on not in eval_sets:
        raise BenchError(f"select_on {select_on!r} is not an eval set ({', '.join(eval_sets)})")
    if hp.batch_size % info.world_size:
        raise BenchError(
            f"batch_size {hp.batch_size} does not split over {info.world_size} processes"
        )

    cuda = device.type == "cuda"
    amp_dtype = _AMP_DTYPES[hp.amp_dtype] if hp.amp and cuda else None
    channels_last = hp.channels_last and cuda
    for flag in ("amp", "channels_last"):
        if getattr(hp, flag) and not cuda:
            say(f"note: {flag} is CUDA-only; ignored on {device.type}")
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    # Data order: a pure function of (seed, epoch), see the module docstring.
    per_rank_batch = hp.batch_size // info.world_size
    sampler = DistributedSampler(
        train_set,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=True,
        seed=hp.seed,
        drop_last=False,
    )
    loader_gen = torch.Generator()
    loader = DataLoader(
        train_set,
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=hp.num_workers,
        pin_memory=cuda,
        # A one-sample last batch would break BatchNorm in train mode: drop just that case.
        drop_last=len(sampler) % per_rank_batch == 1 and len(sampler) > 1,
        generator=loader_gen,
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise BenchError("the training set is empty")

    optimizer = build_optimizer(model, hp)
    schedule = LRSchedule(optimizer, hp, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None

    latest, best_path, metrics_path = (
        run_dir / LATEST_FILE,
        run_dir / BEST_FILE,
        run_dir / METRICS_FILE,
    )
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    start_epoch = step = 0
    wall = 0.0
    resumed_from = None
    # Rank 0 decides so that all ranks agree even if the file appears mid-way.
    if broadcast_object(latest.is_file() if info.is_main else None):
        ckpt = load_checkpoint(latest)
        if TrainHParams.from_dict(ckpt["hparams"]) != hp:
            raise BenchError(f"{latest} was written with different hparams; use a new run dir")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        try:
            schedule.load_state_dict(ckpt["schedule"])
        except ValueError as e:
            raise BenchError(f"cannot resume {latest}: {e}") from None
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        if len(rng) != info.world_size:
            say(f"note: resuming {len(rng)}-process RNG state on {info.world_size} processes")
        restore_rng_state(rng[info.rank] if len(rng) == info.world_size else rng[0])
        start_epoch, step = ckpt["epoch"], ckpt["step"]
        history, best, wall = ckpt["history"], ckpt["best"], ckpt["wall_time_s"]
        resumed_from = start_epoch
        if info.is_main:
            # The checkpoint is the truth: drop a metrics line whose checkpoint never landed.
            lines = "".join(_jsonl_line(r) for r in history)
            atomic_write_text(metrics_path, lines)
        say(f"resuming {run_dir} at epoch {start_epoch}/{hp.epochs} (step {step})")
    else:
        seed_everything(hp.seed)
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            metrics_path.unlink(missing_ok=True)
            best_path.unlink(missing_ok=True)

    net = wrap_ddp(model, device, find_unused_parameters=find_unused_parameters)
    if hp.compile:
        net = torch.compile(net)
    criterion = objective.loss or nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
    show_bar = info.is_main and (progress if progress is not None else sys.stderr.isatty())
    stopped = False

    for epoch in range(start_epoch, hp.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        loader_gen.manual_seed(epoch_seed(hp.seed, epoch))
        net.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{hp.epochs}",
            disable=not show_bar,
            leave=False,
            dynamic_ncols=True,
        )
        for i, batch in enumerate(bar):
            x, y = _xy(batch)
            x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
            lr = schedule.apply(step)
            if before_step is not None:
                before_step(step)
            with _autocast(device, amp_dtype):
                out = net(x)
                loss = criterion(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            step += 1
            with torch.no_grad():
                n = float(len(y))
                correct = (
                    out.argmax(1).eq(y).sum()
                    if objective.train_accuracy
                    else torch.zeros((), device=device)
                )
                sums += torch.stack(
                    [loss.detach().double() * n, correct.double(), sums.new_tensor(n)]
                )
            if show_bar and (i % 10 == 0 or i == steps_per_epoch - 1):
                bar.set_postfix(loss=f"{sums[0].item() / sums[2].item():.3f}", lr=f"{lr:.4g}")
        bar.close()
        broadcast_buffers(model)  # one set of BN running stats for eval and the checkpoint
        all_reduce_sum(sums)
        loss_sum, correct_sum, n_sum = sums.tolist()
        if not math.isfinite(loss_sum):
            # Nothing useful can follow, and NaN is not JSON: stop before writing anything.
            raise BenchError(f"training diverged in epoch {epoch + 1} (loss {loss_sum}); lower lr?")
        train_metrics = {"loss": loss_sum / n_sum, "n": int(n_sum)}
        if objective.train_accuracy:
            train_metrics["top1"] = 100.0 * correct_sum / n_sum
        evals = {
            name: objective.evaluate(
                model,
                ds,
                device,
                hp.eval_batch_size,
                num_workers=hp.num_workers,
                distributed=info.enabled,
                amp_dtype=amp_dtype,
                channels_last=channels_last,
            )
            for name, ds in eval_sets.items()
        }
        dt = time.perf_counter() - t0
        wall += dt
        record = {
            "epoch": epoch + 1,
            "step": step,
            "lr": lr,
            "train": train_metrics,
            "eval": evals,
            "time_s": dt,
        }
        history.append(record)
        improved = False
        if select_on is not None:
            score = evals[select_on][objective.metric]
            # Ties keep the earlier epoch.
            if best is None or objective.better(score, best["score"]):
                best = {
                    "epoch": epoch + 1,
                    "on": select_on,
                    "metric": objective.metric,
                    "score": score,
                    objective.metric: score,
                    "metrics": evals,
                }
                improved = True

        # Every rank's RNG, gathered at the very end of the epoch (after eval).
        rng_states = all_gather_object(capture_rng_state())
        if info.is_main:
            weights = model.state_dict()
            if improved:
                save_checkpoint(
                    best_path,
                    {
                        "model": weights,
                        "epoch": epoch + 1,
                        "select_on": select_on,
                        "metrics": evals,
                    },
                )
            save_checkpoint(
                latest,
                {
                    "model": weights,
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rng_states,
                    "epoch": epoch + 1,
                    "step": step,
                    "history": history,
                    "best": best,
                    "wall_time_s": wall,
                    "hparams": hp.to_dict(),
                    "world_size": info.world_size,
                },
            )
            append_jsonl(metrics_path, record)
        evals_text = " | ".join(f"{k} {_fmt(v)}" for k, v in evals.items())
        say(
            f"epoch {epoch + 1}/{hp.epochs} step {step} lr {lr:.4g} "
            f"train {_fmt(train_metrics)}"
            + (f" | {evals_text}" if evals_text else "")
            + f" | {dt:.1f}s"
        )
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < hp.epochs:
            stopped = True
            break

    barrier()  # files are complete on every rank's return
    done = len(history)
    return {
        "complete": done >= hp.epochs and not stopped,
        "epochs": done,
        "steps": step,
        "steps_per_epoch": steps_per_epoch,
        "world_size": info.world_size,
        "wall_time_s": wall,
        "final": history[-1]["eval"] if history else {},
        "final_train": history[-1]["train"] if history else {},
        "best": best,
        "history": history,
        "resumed_from": resumed_from,
        "run_dir": str(run_dir),
        "latest_checkpoint": str(latest),
        "best_checkpoint": str(best_path) if best is not None else None,
    }


def _jsonl_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
