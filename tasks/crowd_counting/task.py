"""The crowd-counting transfer task: a ticket backbone in a CSRNet-style counter on ShanghaiTech.

A `CrowdCell` is one (ticket, dataset, seed) cell: density maps cached in HDF5, a
hashed run directory (skip if finished, resume if not), training with the suite's engine
(model selected by MAE on a validation split carved from train), one final evaluation of
the selected weights on the test split (whole images, batch 1) and the uniform record.
The registered adapter `CrowdCounting` ("crowd_counting") runs a TransferRun as one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from bench.engine.distributed import barrier, dist_info
from bench.engine.rundir import RunPlan
from bench.runs.cell import Cell, CostSpec, Fitted, Scored, engine_fit, run_transfer
from bench.runs.pretrained import Init
from bench.runs.transfer import TASKS, TransferRun, TransferTask
from bench.ticket.schema import Ticket
from bench.util.errors import BenchError
from bench.util.progress import show_progress
from tasks.crowd_counting.cache import CacheEntry, cached_density
from tasks.crowd_counting.data import (
    DATASETS,
    Sample,
    carve_validation,
    find_part,
    list_split,
    split_digest,
)
from tasks.crowd_counting.dataset import Item, TrainCrops, WholeImages
from tasks.crowd_counting.density import DensitySpec
from tasks.crowd_counting.metrics import METRIC, MSE_ALIAS_NOTE, OBJECTIVE, evaluate_counts
from tasks.crowd_counting.model import CrowdCounter, frontend_stride
from tasks.crowd_counting.options import (
    ITERS_NOTE,
    OPTIONS,
    PROTOCOLS,
    CrowdOptions,
    apply_length,
    resolve,
    steps_per_epoch,
)

_log = logging.getLogger(__name__)
TASK = "crowd_counting"
RUN_KIND = "crowd-counting"
HEAD = "csrnet-b"


# ---- data ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Splits:
    """train / val (carved from train) / test samples of one part."""

    part_dir: Path
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]

    def as_dict(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def load_splits(dataset: str, data_root: Path | None, options: CrowdOptions) -> Splits:
    part_dir = find_part(dataset, data_root)
    train_all = list_split(part_dir, "train")
    test = list_split(part_dir, "test")
    train, val = carve_validation(train_all, options.val_fraction, options.split_seed)
    return Splits(part_dir, train, val, test)


def build_caches(
    splits: Splits, spec: DensitySpec, cache_dir: Path | None, progress: bool | None = None
) -> dict[str, list[CacheEntry]]:
    """Every density map, built by rank 0 first (the other ranks then reuse the files)."""
    info = dist_info()

    def build(bar: bool) -> dict[str, list[CacheEntry]]:
        todo = [(k, s) for k, v in splits.as_dict().items() for s in v]
        out: dict[str, list[CacheEntry]] = {k: [] for k in splits.as_dict()}
        for k, s in tqdm(todo, desc="density maps", disable=not bar, leave=False):
            out[k].append(cached_density(s, spec, cache_dir))
        return out

    entries: dict[str, list[CacheEntry]] = {}
    if info.is_main:
        entries = build(show_progress(progress))
    barrier()
    if not info.is_main:
        entries = build(False)
    return entries


def _items(samples: list[Sample], entries: list[CacheEntry]) -> list[Item]:
    return [Item(s.image, e.path, e.annotated, e.shape) for s, e in zip(samples, entries)]


def _cache_summary(entries: dict[str, list[CacheEntry]]) -> dict[str, Any]:
    return {
        split: {
            "images": len(es),
            "annotated_points": sum(e.annotated for e in es),
            "points_outside_image": sum(e.outside for e in es),
            "points_in_maps": sum(e.placed for e in es),
            "map_mass": round(sum(e.mass for e in es), 6),
        }
        for split, es in entries.items()
    }


# ---- one cell --------------------------------------------------------------------------------
class CrowdCell(Cell):
    """MAE on the test split of the weights selected by validation MAE."""

    task = TASK
    run_kind = RUN_KIND
    # Scored by what it selects by (MAE, lower is better): the objective declares it once.
    metric = OBJECTIVE.metric
    higher_is_better = OBJECTIVE.higher_is_better
    select_split = "val"
    head = HEAD

    def __init__(
        self,
        run: TransferRun,
        *,
        progress: bool | None = None,
        stop_after_epoch: int | None = None,
    ) -> None:
        if run.dataset not in DATASETS:
            raise BenchError(
                f"unknown crowd counting dataset {run.dataset!r} (known: {', '.join(DATASETS)})"
            )
        part_dir = find_part(run.dataset, run.data_root)
        self.protocol_name, hp, self.opts = resolve(run.options, part_dir)
        self.splits = load_splits(run.dataset, run.data_root, self.opts)
        self.spec = self.opts.density_spec(run.dataset)
        stride = frontend_stride(run.ticket)
        if self.opts.crop_size % stride:
            raise BenchError(
                f"crop_size {self.opts.crop_size}: expected a multiple of the output stride "
                f"{stride}"
            )
        n_train = len(self.splits.train) * self.opts.crops_per_image
        spe = steps_per_epoch(n_train, hp.batch_size, dist_info().world_size)
        hp = replace(apply_length(hp, run.epochs, run.iters, spe), seed=run.seed)
        super().__init__(run.ticket, run.dataset, hp)
        self.iters, self.progress, self.stop_after_epoch = run.iters, progress, stop_after_epoch
        self.entries: dict[str, list[CacheEntry]] = {}

    def identity(self) -> dict[str, Any]:
        runtime = ("cache_dir", "cost_size", "latency_repeats")
        return {
            "head": HEAD,
            "protocol": self.protocol_name,
            "density": self.spec.as_dict(),
            "data": {k: v for k, v in self.opts.to_dict().items() if k not in runtime},
            "splits": split_digest(self.splits.as_dict()),
        }

    def cost_model(self, ticket: Ticket) -> nn.Module:
        return CrowdCounter(ticket)

    def cost_spec(self) -> CostSpec:
        h, w = self.opts.cost_size
        return CostSpec((1, 3, h, w), latency=self.opts.latency_repeats > 0)

    def fit(self, plan: RunPlan, init: Init, device: str) -> Fitted:
        opts = self.opts
        cache_dir = Path(opts.cache_dir) if opts.cache_dir else None
        self.entries = entries = build_caches(self.splits, self.spec, cache_dir, self.progress)
        outside = sum(e.outside for es in entries.values() for e in es)
        if outside and dist_info().is_main:
            action = "clipped to the border" if self.spec.outside == "clip" else "left out"
            _log.warning(f"note: {outside} annotated points lie outside their images ({action}; "
                         "counted in the ground truth and in the record)")  # fmt: skip
        torch.manual_seed(self.seed)  # the model's initial weights are part of the seeded run
        model = CrowdCounter(self.ticket)
        stride = model.output_stride
        crop = None if opts.crop_size == 0 else (opts.crop_size, opts.crop_size)
        train_set = TrainCrops(
            _items(self.splits.train, entries["train"]),
            stride=stride,
            crop=crop,
            crops_per_image=opts.crops_per_image,
            flip=opts.flip,
        )
        self.test_set = WholeImages(_items(self.splits.test, entries["test"]), stride=stride)
        val_set = WholeImages(_items(self.splits.val, entries["val"]), stride=stride)
        return engine_fit(
            model,
            model.frontend,
            init,
            self.ticket,
            train_set,
            {"val": val_set},
            self.hp,
            plan,
            device,
            select_on="val",
            objective=OBJECTIVE,
            progress=self.progress,
            stop_after_epoch=self.stop_after_epoch,
        )

    def score(self, fitted: Fitted, device: str) -> Scored:
        test = evaluate_counts(fitted.model, self.test_set, device, progress=self.progress)
        out = fitted.facts
        extras = {
            "rmse": test["rmse"],
            "mse_alias_of_rmse": MSE_ALIAS_NOTE,
            "n_test": test["n"],
            "test_loss": test["loss"],
            "test_mean_pred_count": test["mean_pred_count"],
            "val_mae": out["best"]["mae"],
            "val_rmse": out["best"]["metrics"]["val"]["rmse"],
            "best_epoch": out["best"]["epoch"],
            "final_val_mae": out["final"]["val"]["mae"],
            "final_train_loss": out["final_train"]["loss"],
            "first_train_loss": out["history"][0]["train"]["loss"],
            "part_dir": str(self.splits.part_dir),
            "density_maps_built": sum(e.built for es in self.entries.values() for e in es),
            "world_size": out["world_size"],
            "resumed_from_epoch": out["resumed_from"],
        }
        return Scored(test["mae"], extras, self._protocol(out, fitted.model.output_stride))

    def _protocol(self, out: dict[str, Any], stride: int) -> dict[str, Any]:
        hp, opts, spec = self.hp, self.opts, self.spec
        return {
            "protocol": self.protocol_name,
            "protocol_note": PROTOCOLS.get(self.protocol_name).note,
            "epochs": hp.epochs,
            "steps": out["steps"],
            "steps_per_epoch": out["steps_per_epoch"],
            "iters_requested": self.iters,
            "iters_mapping": ITERS_NOTE if self.iters is not None else None,
            "batch_size": hp.batch_size,
            "loss": "per-image sum of squared errors of the stride-pooled density map",
            "eval_mode": "whole images, batch 1; count = sum of the predicted map",
            "output_stride": stride,
            "density": {
                **spec.as_dict(),
                "normalization": spec.border,
                "downsampling": f"sum pooling x{stride} (count-preserving)",
            },
            "selection": {
                "split": "val",
                "carved_from": "train",
                "metric": METRIC,
                "lower_is_better": True,
                "val_fraction": opts.val_fraction,
                "split_seed": opts.split_seed,
            },
            "splits": {
                "train": len(self.splits.train),
                "val": len(self.splits.val),
                "test": len(self.splits.test),
                "digest": split_digest(self.splits.as_dict()),
            },
            "data": _cache_summary(self.entries),
            "options": {k: v for k, v in opts.to_dict().items() if k != "cache_dir"},
            "hparams": self.protocol_hparams(),
        }


# ---- the registered adapter ------------------------------------------------------------------
@TASKS.register(TASK)
class CrowdCounting(TransferTask):
    """ShanghaiTech Part A / Part B counting with a CSRNet-style head (metric: MAE)."""

    name = TASK
    datasets = OPTIONS.datasets
    cell = CrowdCell

    def write_sample(self, data_root: Path) -> None:
        from tasks.crowd_counting.sample import ensure_sample

        ensure_sample(data_root)

    def missing(self, dataset: str, data_root: Path | None) -> str | None:
        try:
            part_dir = find_part(dataset, data_root)
            for split in ("train", "test"):
                list_split(part_dir, split)
        except BenchError as e:
            return str(e)
        return None

    def run(self, run: TransferRun) -> dict[str, Any]:
        return run_transfer(CrowdCell(run), run)
