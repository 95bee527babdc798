"""Supernet training: the full-SAM network with a fresh random mask every iteration.

The engine's `before_step` hook draws the mask from torch's global RNG, which the engine
seeds from the hparam seed, checkpoints at every epoch end and restores on resume; so a
resumed supernet run draws the same masks, and under torchrun every rank (seeded alike)
draws the same mask, as one process would. DDP needs find_unused_parameters=True because
a 0 slot's SAM takes no part in the step. Training uses the train split minus the held-out
split (optionally a fixed random subset of it); the held-out split is left to the search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from bench.engine.distributed import is_main_process
from bench.engine.hparams import TrainHParams
from bench.engine.loop import train
from bench.engine.rundir import LATEST_FILE, prepare_run
from bench.models.resnet import ModelConfig, SlotResNet
from bench.models.sams import sam_defaults
from bench.models.slots import build_supernet
from bench.search.hparams import SupernetHParams
from bench.search.strategies.base import derived_seed
from bench.util.io import atomic_write_json, read_json

__all__ = ["MaskSampler", "SupernetRun", "sample_mask", "supernet_train_set", "train_supernet"]


def sample_mask(
    n: int, hp: SupernetHParams, generator: torch.Generator | None = None
) -> tuple[int, ...]:
    """One training mask: Bernoulli(keep_prob) bits, or a uniform count then uniform slots."""
    if hp.sampling == "bernoulli":
        bits = torch.rand(n, generator=generator) < hp.keep_prob
        return tuple(int(b) for b in bits.tolist())
    k = int(torch.randint(0, n + 1, (1,), generator=generator))
    on = set(torch.randperm(n, generator=generator)[:k].tolist())
    return tuple(int(i in on) for i in range(n))


class MaskSampler:
    """`before_step` hook: a fresh mask for every optimizer step (global torch RNG)."""

    def __init__(self, model: SlotResNet, hp: SupernetHParams) -> None:
        self.model, self.hp = model, hp
        self.n = len(model.slot_ids)
        self.history: list[tuple[int, ...]] | None = None  # set to [] to record (tests)

    def __call__(self, step: int) -> None:
        mask = sample_mask(self.n, self.hp)
        self.model.set_mask(mask)
        if self.history is not None:
            self.history.append(mask)


@dataclass(frozen=True)
class SupernetRun:
    """A finished supernet: its run directory, weights file and result record."""

    path: Path
    weights: Path
    result: dict[str, Any]


def supernet_train_set(train_set: Dataset, size: int) -> tuple[Dataset, np.ndarray | None]:
    """The fixed random subset of `size` training images (0 or >= all: the whole split)."""
    n = len(train_set)
    if size <= 0 or size >= n:
        return train_set, None
    # Seeded by a constant: the subset is part of the data protocol, not of a run's seed.
    idx = np.sort(np.random.default_rng(derived_seed(0, "supernet-subset")).permutation(n)[:size])
    return Subset(train_set, idx.tolist()), idx


def supernet_identity(
    config: ModelConfig, num_classes: int, split_info: dict[str, Any], sampler: SupernetHParams
) -> dict[str, Any]:
    """What names a supernet run besides its training hparams."""
    return {
        "dataset": split_info["dataset"],
        "backbone": config.backbone,
        "sam": config.sam,
        "sam_args": {**sam_defaults(config.sam), **config.sam_args} if config.sam else {},
        "sharing": config.sharing,
        "num_classes": num_classes,
        "input_size": list(split_info["input_size"]),
        "split": {
            k: split_info[k] for k in ("heldout_rule", "split_seed", "heldout_sha256", "sizes")
        },
        "sampler": sampler.to_dict(),
    }


def train_supernet(
    config: ModelConfig,
    train_set: Dataset,
    split_info: dict[str, Any],
    num_classes: int,
    hp: TrainHParams,
    sampler: SupernetHParams,
    out_root: str | Path,
    device: torch.device | str,
    *,
    mode: str = "new",
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
    stop_after_epoch: int | None = None,
) -> SupernetRun | None:
    """Train (or resume, or reuse) the supernet of `config` in out_root/supernet_<hash>.

    Returns None when stopped by `stop_after_epoch` before the last epoch (tests).
    """
    data, idx = supernet_train_set(train_set, sampler.train_size)
    identity = supernet_identity(config, num_classes, split_info, sampler)
    plan = prepare_run(out_root, "supernet", identity, hp, mode=mode)
    weights = plan.path / LATEST_FILE
    if plan.action == "skip":
        return SupernetRun(plan.path, weights, read_json(plan.result_path))
    # Initial weights from the hparam seed, leaving the global RNG to the engine.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hp.seed)
        model = build_supernet(config, num_classes=num_classes)
    sampler_hook = MaskSampler(model, sampler)
    res = train(
        model,
        data,
        {},
        hp,
        plan.path,
        device,
        select_on=None,
        log=log,
        progress=progress,
        stop_after_epoch=stop_after_epoch,
        find_unused_parameters=True,
        before_step=sampler_hook,
    )
    if not res["complete"]:
        return None
    result = {
        "complete": True,
        "epochs": res["epochs"],
        "steps": res["steps"],
        "world_size": res["world_size"],
        "wall_time_s": res["wall_time_s"],
        "final_train": res["final_train"],
        "train_images": len(data),
        "train_subset": None if idx is None else len(idx),
        "weights": str(weights),
    }
    if is_main_process():
        atomic_write_json(plan.result_path, result)
    return SupernetRun(plan.path, weights, result)
