"""The classification task adapter: a ticket retrained from scratch on a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from bench.data.datasets import DATASETS, load_splits
from bench.engine import PRESETS
from bench.engine.hparams import preset_for
from bench.runs.classify import HEAD, ClassificationCell, DataOptions, train_cell, with_seed
from bench.runs.transfer import TASKS, TransferRun, TransferTask
from bench.util.errors import BenchError
from tasks.classification.options import OPTIONS


@TASKS.register("classification")
class Classification(TransferTask):
    """Top-1 on the test split, model selected on the held-out split (paper protocols)."""

    name: ClassVar[str] = "classification"
    datasets: ClassVar[tuple[str, ...]] = OPTIONS.datasets
    cell: ClassVar[type] = ClassificationCell
    head: ClassVar[str] = HEAD
    eval_split: ClassVar[str] = "test"
    budget_unit: ClassVar[str] = "epochs"

    def missing(self, dataset: str, data_root: Path | None) -> str | None:
        if dataset not in DATASETS:
            return f"unknown dataset {dataset!r}"
        try:
            load_splits(dataset, data_root)
        except BenchError as e:
            return str(e)
        return None

    def run(self, run: TransferRun) -> dict[str, Any]:
        if run.iters is not None:
            raise BenchError("classification counts epochs: use --epochs, not --iters")
        preset = preset_for(run.options.get("preset") or "auto", run.dataset)
        hp = with_seed(PRESETS.get(preset), run.seed, run.epochs)
        data = DataOptions(
            data_root=run.data_root,
            heldout=run.options.get("heldout"),
            train_limit=run.options.get("train_limit"),
        )
        return train_cell(
            run.ticket,
            run.dataset,
            hp,
            out_root=run.out_root,
            data=data,
            device=run.device,
            init=run.init,
            mode=run.mode,
            preset=preset,
        )
