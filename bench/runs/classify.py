"""Train a ticket (or a control) on a classification dataset, and score it.

One call = one (ticket, dataset, seed) cell of the run-and-score path (bench.runs.cell): a
hashed run directory (skip if finished, resume if not), training with the engine from
scratch or from an Init (model selection on the held-out split), one final evaluation of
the selected weights on the test split, and the uniform record. These runs are also the
pretraining each transfer arm starts from (bench.runs.pretrained).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Subset

from bench.cost.table import measure_cost
from bench.engine import PRESETS, TrainHParams, evaluate
from bench.engine.checkpoint import load_checkpoint
from bench.engine.device import select_device
from bench.engine.rundir import RunPlan
from bench.models.slots import build_ticket_model
from bench.runs.cell import Cell, CostSpec, Fitted, Scored, cell_setting, engine_fit, run_cell
from bench.runs.pretrained import (
    SCRATCH,
    Init,
    check_ticket,
    load_backbone,
    load_state,
    state_dict_of,
)
from bench.runs.records import make_record, write_record
from bench.ticket.schema import Ticket, validate
from bench.util.errors import BenchError
from bench.util.fingerprint import file_sha256

if TYPE_CHECKING:
    from bench.data.datasets import Splits

TASK = "classification"
HEAD = "linear"


@dataclass(frozen=True)
class DataOptions:
    """How the dataset is read: where, which held-out split, and optional limits."""

    data_root: Path | None = None
    heldout: int | str | None = None
    split_seed: int = 0
    image_size: int | None = None
    train_limit: int | None = None  # first N of a seeded shuffle of train (quick runs)

    def load(self, dataset: str) -> Splits:
        """The splits of `dataset` as these options read it (train_limit not applied)."""
        from bench.data.datasets import load_splits

        return load_splits(dataset, self.data_root, heldout=self.heldout,
                           split_seed=self.split_seed, image_size=self.image_size)  # fmt: skip


def _limit(dataset, n: int | None, seed: int):
    if n is None or n >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, sorted(order[:n].tolist()))


class ClassificationCell(Cell):
    """Top-1 on the test split of the weights selected on the held-out split."""

    task = TASK
    run_kind = "train"  # bench.runs.pretrained finds pretraining runs by this kind
    metric = "top1"
    higher_is_better = True
    select_split = "heldout"
    head = HEAD

    def __init__(
        self,
        ticket: Ticket,
        dataset: str,
        hp: TrainHParams,
        data: DataOptions = DataOptions(),
        *,
        preset: str | None = None,
        progress: bool | None = None,
        stop_after_epoch: int | None = None,
    ) -> None:
        super().__init__(ticket, dataset, hp)
        self.data, self.preset = data, preset
        self.progress, self.stop_after_epoch = progress, stop_after_epoch
        self.splits = data.load(dataset)
        self.train_set = _limit(self.splits.train, data.train_limit, data.split_seed)

    def identity(self) -> dict[str, Any]:
        return {
            "heldout": self.splits.info["heldout_sha256"],
            "image_size": self.data.image_size,
            "train_limit": self.data.train_limit,
        }

    def cost_model(self, ticket: Ticket) -> nn.Module:
        return build_ticket_model(ticket, num_classes=self.splits.num_classes)

    def cost_spec(self) -> CostSpec:
        return CostSpec((1, *self.splits.input_size))

    def recipe(self) -> dict[str, Any]:
        data = {f.name: getattr(self.data, f.name) for f in fields(self.data)}
        data["data_root"] = None if self.data.data_root is None else str(self.data.data_root)
        return {"task": TASK, "ticket": self.ticket.to_dict(), "dataset": self.dataset,
                "data": data, "preset": self.preset}  # fmt: skip

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], hp: TrainHParams) -> ClassificationCell:
        """The cell `recipe()` describes (BenchError when its ticket or data no longer read)."""
        data = dict(recipe["data"])
        data["data_root"] = None if data["data_root"] is None else Path(data["data_root"])
        ticket = validate(recipe["ticket"], source="the run's recipe")
        return cls(ticket, recipe["dataset"], hp, DataOptions(**data), preset=recipe["preset"])

    def check_init(self, init: Init) -> None:
        super().check_init(init)
        if init.path is not None:  # and it fits the network (by name and shape)
            load_backbone(self.cost_model(self.ticket), init, self.ticket)

    def fit(self, plan: RunPlan, init: Init, device: str) -> Fitted:
        torch.manual_seed(self.seed)  # the model's initial weights are part of the seeded run
        model = build_ticket_model(self.ticket, num_classes=self.splits.num_classes)
        return engine_fit(
            model,
            model,
            init,
            self.ticket,
            self.train_set,
            {"heldout": self.splits.heldout},
            self.hp,
            plan,
            device,
            select_on="heldout",
            progress=self.progress,
            stop_after_epoch=self.stop_after_epoch,
        )

    def score(self, fitted: Fitted, device: str) -> Scored:
        hp, out = self.hp, fitted.facts
        test = evaluate(fitted.model, self.splits.test, device, hp.eval_batch_size,
                        num_workers=hp.num_workers)  # fmt: skip
        extras = {
            "top5": test["top5"],
            "test_loss": test["loss"],
            "n_test": test["n"],
            "heldout_top1": out["best"]["top1"],
            "best_epoch": out["best"]["epoch"],
            "final_heldout_top1": out["final"]["heldout"]["top1"],
            "data_root": self.splits.info.get("root"),
            "world_size": out["world_size"],
        }
        protocol = {
            "preset": self.preset,
            "epochs": hp.epochs,
            "steps": out["steps"],
            "batch_size": hp.batch_size,
            "input_size": list(self.splits.input_size),
            "eval_mode": "single crop, eval transforms",
            "split": {k: v for k, v in self.splits.info.items() if k != "root"},
            "train_size": len(self.train_set),
            "hparams": self.protocol_hparams(),
        }
        if self.preset in PRESETS:
            base = PRESETS.get(self.preset)
            if base.epochs != hp.epochs and base.milestones:  # say that the budget was scaled
                protocol["schedule_scaled_from"] = {
                    "epochs": base.epochs,
                    "milestones": list(base.milestones),
                }
        return Scored(test["top1"], extras, protocol)


def train_cell(
    ticket: Ticket,
    dataset: str,
    hp: TrainHParams,
    *,
    out_root: Path,
    data: DataOptions = DataOptions(),
    device: str = "auto",
    init: Init = SCRATCH,
    mode: str = "new",
    preset: str | None = None,
    progress: bool | None = None,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train and score one cell; returns its record (also written to <out>/records)."""
    cell = ClassificationCell(ticket, dataset, hp, data, preset=preset, progress=progress,
                              stop_after_epoch=stop_after_epoch)  # fmt: skip
    return run_cell(cell, out_root=out_root, device=device, mode=mode, init=init)


def eval_checkpoint(
    cell: ClassificationCell, checkpoint: Path, split: str, *, out_root: Path, device: str = "auto"
) -> dict[str, Any]:
    """Score a checkpoint of the cell's ticket network on one split of the cell's data (batch
    hp.eval_batch_size); write and return a record of its own (named by the checkpoint's
    checksum: never over the training run's record). A checkpoint whose classifier does not
    fit the dataset is refused, never re-initialised."""
    if split not in ("heldout", "test"):
        raise BenchError(f"--split {split!r}: expected heldout or test")
    check_ticket(checkpoint, cell.ticket)
    device = str(select_device(device))
    state = state_dict_of(load_checkpoint(checkpoint), str(checkpoint))
    model = cell.cost_model(cell.ticket)
    load_state(model, state, str(checkpoint), head=True)  # the head is scored: it must fit
    m = evaluate(model, getattr(cell.splits, split), device, cell.hp.eval_batch_size)
    c, h, w = cell.splits.input_size
    record = make_record(
        **cell_setting(cell, eval_split=split, select_split=None),  # scored, not selected
        value=m["top1"],
        run_dir=checkpoint.parent,
        extras={"top5": m["top5"], "loss": m["loss"], "n": m["n"], "checkpoint": str(checkpoint)},
        # Parameters and FLOPs only: latency ratios come from side-by-side sessions
        # (bench.runs.cell).
        cost=measure_cost(model, (1, c, h, w), device=device, latency=False),
        protocol={
            "eval_mode": "single crop, eval transforms",
            "split": {k: v for k, v in cell.splits.info.items() if k != "root"},
        },
        evaluates=file_sha256(checkpoint, 16),
    )
    write_record(out_root, record)
    return record


def with_seed(hp: TrainHParams, seed: int, epochs: int | None) -> TrainHParams:
    """`hp` for `seed`, over `epochs` when given (a step schedule's milestones scale along)."""
    return replace(hp.with_epochs(epochs), seed=seed)


def records_table(records: list[dict[str, Any]]) -> str:
    """Ticket vs controls at a glance: test metric, held-out score, params, latency, run."""
    rows = [r for r in records if r.get("provenance", {}).get("status") == "finished"]
    if not rows:
        return ""
    lines = [
        f"{'ticket':<38} {'seed':>4} {'stages':<14} {'test':>7} {'heldout':>7} "
        f"{'params':>9} {'latency':>9}  run"
    ]
    for r in rows:
        i, res, c = r["identity"], r["result"], r["cost"]
        sel = res["extras"].get("heldout_top1")
        lat = c.get("latency_ms")
        lines.append(
            f"{i['ticket']:<38} {r['provenance']['seed']:>4} {i['stages']:<14} "
            f"{res['value']:7.2f} {'' if sel is None else f'{sel:7.2f}':>7} "
            f"{c['params_total'] / 1e6:8.3f}M {'' if lat is None else f'{lat:7.2f}ms':>9}  "
            f"{r['provenance']['run_dir']}"
        )
    return "\n".join(lines)
