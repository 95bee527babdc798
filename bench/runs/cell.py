"""The one run-and-score path of every task: a (ticket, task, dataset, seed) cell.

plan the run (identity -> hashed directory) -> skip if finished, resume if killed ->
start from the arm's weights and train -> select -> score once on the evaluation split ->
look up costs (measured side by side with the full and none networks) -> write
result.json, then the record.

A task supplies a `Cell`: its identity, how it trains and selects (`fit`), how it scores
(`score`) and the network whose cost it reports (`cost_model`). Status lines go to this
module's logger; the record is what callers print.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn
from torch.utils.data import Dataset

from bench.engine.device import select_device
from bench.engine.distributed import barrier, broadcast_object, dist_info
from bench.engine.hparams import HParams
from bench.engine.loop import Diverged
from bench.engine.rundir import RunPlan, prepare_run, release_run
from bench.runs.pretrained import SCRATCH, Init, LoadReport
from bench.runs.records import drop_failed, make_record, write_record
from bench.runs.transfer import TransferRun
from bench.ticket.schema import Ticket
from bench.util.errors import DataError
from bench.util.io import atomic_write_json, read_json

_log = logging.getLogger(__name__)


@dataclass
class Fitted:
    """What training left: the selected model (None when interrupted) and its facts."""

    complete: bool
    model: nn.Module | None = None
    load: LoadReport | None = None
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scored:
    """The cell's number, the task's extras and the task's part of the protocol."""

    value: float | None
    extras: dict[str, Any]
    protocol: dict[str, Any]


@dataclass(frozen=True)
class CostSpec:
    """How costs are measured: at which input, whether latency is timed, and how long."""

    input_shape: tuple[int, ...]
    latency: bool = True
    tolerance: float = 0.02
    time_cap_s: float = 20.0


class Cell(ABC):
    """What a task adapter supplies for one cell."""

    task: ClassVar[str]
    run_kind: ClassVar[str]  # run directories are <out>/<run_kind>_<hash>
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    eval_split: ClassVar[str] = "test"
    select_split: ClassVar[str | None] = None

    def __init__(self, ticket: Ticket, dataset: str, hp: HParams) -> None:
        self.ticket, self.dataset, self.hp = ticket, dataset, hp

    @property
    def seed(self) -> int:
        return int(self.hp.seed)

    def protocol_hparams(self) -> dict[str, Any]:
        """The hparams a record's protocol names: all but the seed (the same for every seed
        of a benchmark cell)."""
        return {k: v for k, v in self.hp.to_dict().items() if k != "seed"}

    @property
    @abstractmethod
    def head(self) -> str:
        """The task head's name (part of the record's setting)."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """The task's part of the run identity (data, split, options; not the hparams)."""

    def recipe(self) -> dict[str, Any] | None:
        """What rebuilds this cell to re-score its finished run (bench.runs.repair): plain
        data kept in hparams.json, outside the run hash. None: not rebuildable."""
        return None

    def check_init(self, init: Init) -> None:
        """BenchError if `init`'s file cannot start this cell (checked before the run
        directory is made): it must read as weights only and be of this ticket."""
        from bench.engine.checkpoint import load_checkpoint
        from bench.runs.pretrained import check_ticket, state_dict_of

        if init.path is not None:
            check_ticket(init.path, self.ticket)
            state_dict_of(load_checkpoint(init.path), str(init.path))

    @abstractmethod
    def fit(self, plan: RunPlan, init: Init, device: str) -> Fitted:
        """Build the model, start it from `init`, train (resuming), select."""

    @abstractmethod
    def score(self, fitted: Fitted, device: str) -> Scored:
        """Score the selected model once on the evaluation split."""

    @abstractmethod
    def cost_model(self, ticket: Ticket) -> nn.Module:
        """The task network of `ticket` as input -> output (for parameters, FLOPs, latency)."""

    @abstractmethod
    def cost_spec(self) -> CostSpec: ...


def run_cell(
    cell: Cell, *, out_root: Path, device: str = "auto", mode: str = "new", init: Init = SCRATCH
) -> dict[str, Any]:
    """Run one cell to its record (also written under <out>/records); an interrupted run
    returns {"status": "interrupted", ...}, a diverged one its failed record.

    The run directory is held (bench.engine.rundir's lock) until the record is written.
    The device is selected (and started) first, so that the recorded environment names it."""
    device = str(select_device(device))
    identity = {
        "task": cell.task,
        "dataset": cell.dataset,
        "model": cell.ticket.model_name,
        "ticket": cell.ticket.checksum,
        **cell.identity(),
        "init": init.identity(),
    }
    cell.check_init(init)  # before the run directory exists: a refused file leaves none
    recipe = cell.recipe()
    if recipe is not None:
        recipe = {**recipe, "init": init_recipe(init)}
    plan = prepare_run(out_root, cell.run_kind, identity, cell.hp, mode=mode, recipe=recipe)
    try:
        return _run_planned(cell, plan, out_root, device, init)
    finally:
        release_run(plan.path)


def init_recipe(init: Init) -> dict[str, Any]:
    """`init` as plain data (bench.runs.repair rebuilds it)."""
    path = None if init.path is None else str(init.path)
    return {"kind": init.kind, "path": path, "checksum": init.checksum, "source": init.source}


def rescore(cell: Cell, path: Path, out_root: Path, device: str, init: Init) -> dict[str, Any]:
    """Score the finished run in `path` (held by the caller) anew from its final checkpoint,
    by the one path above, and rewrite its result.json and record (bench.runs.repair)."""
    return _run_planned(cell, RunPlan(path, "resume"), out_root, device, init)


def run_transfer(cell: Cell, run: TransferRun) -> dict[str, Any]:
    """`run_cell` of a transfer task's cell, where and how the TransferRun says."""
    return run_cell(cell, out_root=run.out_root, device=run.device, mode=run.mode, init=run.init)


def _run_planned(
    cell: Cell, plan: RunPlan, out_root: Path, device: str, init: Init
) -> dict[str, Any]:
    info = dist_info()
    if plan.action == "skip":
        record = read_json(plan.result_path)
        if info.is_main:
            _log.info(f"finished already: {plan.path} (use --mode cover to rerun)")
            _write(out_root, record)  # the record may have been removed since
        return record
    if info.is_main:
        verb = "resuming" if plan.action == "resume" else "starting"
        _log.info(f"{verb} {cell.ticket.name} on {cell.task}/{cell.dataset} (seed {cell.seed}, "
            f"{init.describe()}): {plan.path}")  # fmt: skip
    try:
        fitted = cell.fit(plan, init, device)
    except (Diverged, DataError) as e:  # the run failed, not the command's input
        return broadcast_object(_failed(cell, plan, out_root, str(e)) if info.is_main else None)
    if not fitted.complete:
        return {"status": "interrupted", "run_dir": str(plan.path), **fitted.facts}
    t0 = time.perf_counter()
    try:
        scored = cell.score(fitted, device)
    except DataError as e:  # e.g. a corrupt test image: failed as in training, checkpoints kept
        return broadcast_object(_failed(cell, plan, out_root, str(e)) if info.is_main else None)
    record = None
    if info.is_main:
        record = _record(cell, plan, init, fitted, scored, out_root, device)
        # Training time summed over every segment of a resumed run, plus the scoring.
        train_s = fitted.facts.get("wall_time_s", 0.0)
        record["provenance"]["wall_time_s"] = train_s + time.perf_counter() - t0
        atomic_write_json(plan.result_path, record)  # first: a rerun then skips and re-writes
        _write(out_root, record)
    barrier()
    return record if record is not None else read_json(plan.result_path)


def _write(out_root: Path, record: dict[str, Any]) -> None:
    """Write the record; a finished one replaces the failed records of its cell."""
    write_record(out_root, record)
    if record["provenance"]["status"] == "finished":
        drop_failed(out_root, record)


# What a cell fixes of its record (bench.runs.records.make_record's fields by the same name).
_RECORD_FIELDS = (
    "ticket", "task", "dataset", "eval_split", "select_split", "head", "metric",
    "higher_is_better", "seed",
)  # fmt: skip


def cell_setting(cell: Cell, **given: Any) -> dict[str, Any]:
    """What `cell` fixes of its record, with the fields in `given` replaced."""
    return {k: given[k] if k in given else getattr(cell, k) for k in _RECORD_FIELDS}


def _cell_record(cell: Cell, plan: RunPlan, value: float | None, **rest: Any) -> dict[str, Any]:
    """A record of `cell`'s run: what the cell fixes, its value, and `rest` (make_record's)."""
    return make_record(**cell_setting(cell), value=value, run_dir=plan.path, **rest)


def _failed(cell: Cell, plan: RunPlan, out_root: Path, reason: str) -> dict[str, Any]:
    """The failed record of a run that diverged or met an unreadable data file (no
    result.json: a rerun tries again)."""
    _log.warning(f"FAILED {cell.ticket.name} on {cell.task}/{cell.dataset}: {reason}")
    record = _cell_record(
        cell,
        plan,
        None,
        protocol={"hparams": cell.protocol_hparams()},
        status="failed",
        reason=reason,
    )
    _write(out_root, record)
    return record


def engine_fit(
    model: nn.Module,
    backbone: nn.Module,
    init: Init,
    ticket: Ticket,
    train_set: Dataset,
    eval_sets: Mapping[str, Dataset],
    hp: HParams,
    plan: RunPlan,
    device: str,
    **train_kwargs: Any,
) -> Fitted:
    """`fit` for tasks trained by the suite's engine: start `backbone` (inside `model`) from
    `init`, train with selection, and load the selected (best) weights."""
    from bench.engine import train
    from bench.engine.checkpoint import load_checkpoint
    from bench.engine.rundir import BEST_FILE
    from bench.runs.pretrained import load_backbone

    load = load_backbone(backbone, init, ticket)
    out = train(model, train_set, eval_sets, hp, plan.path, device, **train_kwargs)
    if not out["complete"]:
        return Fitted(False, facts={"epochs": out["epochs"]})
    model.load_state_dict(load_checkpoint(plan.path / BEST_FILE)["model"])
    return Fitted(True, model, load, out)


def arm_cost(cell: Cell, out_root: Path, device: str) -> dict[str, Any]:
    """The cell network's cost, from the session that timed it beside its full and none
    networks (bench.cost.table), with its latency ratios to those two."""
    from bench.cost.table import Arch, session_costs
    from bench.ticket.schema import control_tickets

    spec = cell.cost_spec()
    kind = f"{cell.task}/{cell.head}"
    full, none = control_tickets(cell.ticket, 0, ("full", "none"))
    arms = {t.checksum: t for t in (cell.ticket, full, none)}
    archs = [
        Arch(f"{kind}:{c}", t.name, t.kept, lambda t=t: cell.cost_model(t)) for c, t in arms.items()
    ]
    entries = session_costs(
        out_root,
        kind,
        archs,
        spec.input_shape,
        device=device,
        latency=spec.latency,
        tolerance=spec.tolerance,
        time_cap_s=spec.time_cap_s,
    )
    mine = dict(entries[f"{kind}:{cell.ticket.checksum}"])
    ratios = mine.get("latency_ratio") or {}
    cis = mine.get("latency_ratio_ci") or {}
    for name, ref in (("full", full), ("none", none)):
        key = f"{kind}:{ref.checksum}"
        same = ref.checksum == cell.ticket.checksum
        mine[f"latency_ratio_{name}"] = 1.0 if same and spec.latency else ratios.get(key)
        mine[f"latency_ratio_{name}_ci"] = [1.0, 1.0] if same and spec.latency else cis.get(key)
    return mine


def _record(
    cell: Cell,
    plan: RunPlan,
    init: Init,
    fitted: Fitted,
    scored: Scored,
    out_root: Path,
    device: str,
) -> dict[str, Any]:
    init_facts = {"kind": init.kind, "path": None if init.path is None else str(init.path)}
    init_facts |= {"checksum": init.checksum, "source": init.source or None}
    if fitted.load is not None:
        init_facts["keys"] = fitted.load.as_dict()
    return _cell_record(
        cell,
        plan,
        scored.value,
        extras={**scored.extras, "init": init_facts},
        cost=arm_cost(cell, out_root, device),
        protocol={**scored.protocol, "init": init.protocol()},
    )
