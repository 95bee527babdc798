"""The crowd-counting transfer task: a ticket backbone in a CSRNet-style counter on ShanghaiTech.

One call of `run_cell` = one (ticket, dataset, seed) cell: density maps cached in HDF5, a
hashed run directory (skip if finished, resume if not), training with the suite's engine
(model selected by MAE on a validation split carved from train), one final evaluation of
the selected weights on the test split (whole images, batch 1) and the uniform record.
The registered adapter `CrowdCounting` ("crowd_counting") runs a TransferRun through it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bench.cost import measure_cost
from bench.engine import prepare_run, train
from bench.engine.checkpoint import load_checkpoint
from bench.engine.distributed import barrier, dist_info
from bench.engine.rundir import BEST_FILE
from bench.errors import BenchError
from bench.io import atomic_write_json, read_json
from bench.paths import file_sha256
from bench.results import make_record, write_record
from bench.tickets import Ticket
from bench.transfer import TASKS, TransferRun, TransferTask
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
from tasks.crowd_counting.model import CrowdCounter, frontend_stride, load_init
from tasks.crowd_counting.options import (
    ITERS_NOTE,
    PROTOCOLS,
    CrowdOptions,
    apply_length,
    resolve,
    steps_per_epoch,
)

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
    splits: Splits, spec: DensitySpec, cache_dir: Path | None
) -> dict[str, list[CacheEntry]]:
    """Every density map, built by rank 0 first (the other ranks then reuse the files)."""
    info = dist_info()
    entries: dict[str, list[CacheEntry]] = {}
    if info.is_main:
        entries = {
            k: [cached_density(s, spec, cache_dir) for s in v] for k, v in splits.as_dict().items()
        }
    barrier()
    if not info.is_main:
        entries = {
            k: [cached_density(s, spec, cache_dir) for s in v] for k, v in splits.as_dict().items()
        }
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
def run_cell(
    ticket: Ticket,
    dataset: str,
    *,
    out_root: Path,
    data_root: Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    epochs: int | None = None,
    iters: int | None = None,
    init_from: Path | None = None,
    mode: str = "new",
    options: dict[str, Any] | None = None,
    progress: bool | None = None,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train and score one (ticket, dataset, seed) cell; returns its record (also written
    under <out>/records/crowd_counting/<dataset>/). An interrupted run returns a status."""
    if dataset not in DATASETS:
        raise BenchError(
            f"unknown crowd counting dataset {dataset!r} (known: {', '.join(DATASETS)})"
        )
    if init_from is not None and not Path(init_from).is_file():
        raise BenchError(f"--init-from {init_from}: file not found")
    part_dir = find_part(dataset, data_root)
    protocol, hp, opts = resolve(options, part_dir)
    splits = load_splits(dataset, data_root, opts)
    spec = opts.density_spec(dataset)
    info = dist_info()
    stride_probe = frontend_stride(ticket)
    if opts.crop_size % stride_probe:
        raise BenchError(
            f"crop_size {opts.crop_size}: expected a multiple of the output stride {stride_probe}"
        )
    n_train = len(splits.train) * opts.crops_per_image
    spe = steps_per_epoch(n_train, hp.batch_size, info.world_size)
    hp = replace(apply_length(hp, epochs, iters, spe), seed=seed)

    identity = {
        "task": TASK,
        "dataset": dataset,
        "model": ticket.model_name,
        "ticket": ticket.checksum,
        "head": HEAD,
        "protocol": protocol,
        "density": spec.as_dict(),
        "data": {
            k: v
            for k, v in opts.to_dict().items()
            if k not in ("cache_dir", "cost_size", "latency_repeats")
        },
        "splits": split_digest(splits.as_dict()),
        "init_from": file_sha256(init_from, 16) if init_from else None,
    }
    plan = prepare_run(out_root, RUN_KIND, identity, hp, mode=mode)
    if plan.action == "skip":
        if info.is_main:
            print(f"finished already: {plan.path} (use --mode cover to rerun)")
        record = read_json(plan.result_path)
        if info.is_main:
            write_record(out_root, record)  # the record may have been removed since
        return record
    if info.is_main:
        verb = "resuming" if plan.action == "resume" else "starting"
        print(f"{verb} {ticket.name} on {dataset} (seed {seed}, protocol {protocol}): {plan.path}")

    cache_dir = Path(opts.cache_dir) if opts.cache_dir else None
    entries = build_caches(splits, spec, cache_dir)
    outside = sum(e.outside for es in entries.values() for e in es)
    if outside and info.is_main:
        action = "clipped to the border" if spec.outside == "clip" else "left out of the maps"
        print(
            f"note: {outside} annotated points lie outside their images ({action}; counted "
            "in the ground truth and in the record)",
            file=sys.stderr,
        )
    torch.manual_seed(hp.seed)  # the model's initial weights are part of the seeded run
    model = CrowdCounter(ticket)
    stride = model.output_stride
    init_kind = load_init(model, Path(init_from)) if init_from is not None else None
    crop = None if opts.crop_size == 0 else (opts.crop_size, opts.crop_size)
    train_set = TrainCrops(
        _items(splits.train, entries["train"]),
        stride=stride,
        crop=crop,
        crops_per_image=opts.crops_per_image,
        flip=opts.flip,
    )
    val_set = WholeImages(_items(splits.val, entries["val"]), stride=stride)
    test_set = WholeImages(_items(splits.test, entries["test"]), stride=stride)

    out = train(
        model,
        train_set,
        {"val": val_set},
        hp,
        plan.path,
        device,
        select_on="val",
        objective=OBJECTIVE,
        progress=progress,
        stop_after_epoch=stop_after_epoch,
    )
    if not out["complete"]:
        return {"status": "interrupted", "run_dir": str(plan.path), "epochs": out["epochs"]}

    # Final numbers: the validation-selected weights, scored once on the test split.
    best = load_checkpoint(plan.path / BEST_FILE)
    model.load_state_dict(best["model"])
    test = evaluate_counts(model, test_set, device)
    if not info.is_main:
        return {}
    h, w = opts.cost_size
    cost = measure_cost(
        model,
        (1, 3, h, w),
        device=device,
        latency=opts.latency_repeats > 0,
        repeats=max(opts.latency_repeats, 1),
    )
    record = make_record(
        ticket=ticket,
        task=TASK,
        dataset=dataset,
        eval_split="test",
        select_split="val",
        head=HEAD,
        metric=METRIC,
        value=test["mae"],
        higher_is_better=False,
        seed=seed,
        run_dir=plan.path,
        extras={
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
            "part_dir": str(splits.part_dir),
            "density_maps_built": sum(e.built for es in entries.values() for e in es),
        },
        cost=cost,
        protocol={
            "protocol": protocol,
            "protocol_note": PROTOCOLS.get(protocol).note,
            "epochs": hp.epochs,
            "steps": out["steps"],
            "steps_per_epoch": out["steps_per_epoch"],
            "iters_requested": iters,
            "iters_mapping": ITERS_NOTE if iters is not None else None,
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
                "train": len(splits.train),
                "val": len(splits.val),
                "test": len(splits.test),
                "digest": identity["splits"],
            },
            "data": _cache_summary(entries),
            "options": opts.to_dict(),
            "init_from": str(init_from) if init_from else None,
            "init_kind": init_kind,
            "world_size": out["world_size"],
            "resumed_from_epoch": out["resumed_from"],
            "hparams": hp.to_dict(),
        },
    )
    write_record(out_root, record)
    atomic_write_json(plan.result_path, record)
    return record


# ---- the registered adapter ------------------------------------------------------------------
@TASKS.register(TASK)
class CrowdCounting(TransferTask):
    """ShanghaiTech Part A / Part B counting with a CSRNet-style head (metric: MAE)."""

    name = TASK
    datasets = tuple(DATASETS)
    metric = METRIC
    higher_is_better = False

    def missing(self, dataset: str, data_root: Path | None) -> str | None:
        try:
            part_dir = find_part(dataset, data_root)
            for split in ("train", "test"):
                list_split(part_dir, split)
        except BenchError as e:
            return str(e)
        return None

    def run(self, run: TransferRun) -> dict[str, Any]:
        return run_cell(
            run.ticket,
            run.dataset,
            out_root=run.out_root,
            data_root=run.data_root,
            seed=run.seed,
            device=run.device,
            epochs=run.epochs,
            iters=run.iters,
            init_from=run.init_from,
            mode=run.mode,
            options=run.options,
        )
