"""A study's state, read from the files alone: run directories, records and cell folders.

A cell is done when every arm has a finished run directory (a search: its ticket file and
its finished search run), running while its cell lock (or one of its run directories' locks)
has a live holder, failed when its last command exited non-zero or a failed record answers
it, else ready (every dependency done) or waiting on named cells. Each cell has a folder
<out>/study/<name>/cells/<id> holding its lock (the run-directory lock of
bench.engine.rundir), its command's log, starts.jsonl (one line per start) and exit.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engine.rundir import HPARAMS_FILE
from bench.engine.state import describe_holder, lock_holder, read_state, refusal
from bench.study.plan import Cell, Plan
from bench.util.io import read_json
from bench.util.paths import slug

EXIT_FILE = "exit.json"
STARTS_FILE = "starts.jsonl"
LOG_FILE = "log.txt"
STATES = ("done", "failed", "running", "ready", "waiting")


@dataclass(frozen=True)
class RunInfo:
    """What one run directory says: finished, running, failed, started or absent."""

    state: str
    detail: str = ""


@dataclass(frozen=True)
class CellState:
    state: str  # one of STATES
    detail: str = ""
    runs: tuple[Path, ...] = ()


def cell_dir(plan: Plan, cell: Cell) -> Path:
    """The cell's own folder (lock, log, starts, exit status)."""
    return plan.study.out / "study" / plan.study.name / "cells" / slug(cell.id.replace("/", "."))


def read_run(path: Path, failed: Mapping[str, str], deep: bool = True) -> RunInfo:
    """The state of one run directory (bench.engine.state.read_state; `failed` maps run
    directories to the reason of their failed record). A damaged run is a failed cell whose
    reason names the file and the repair command."""
    if not path.exists():
        return RunInfo("absent")
    st = read_state(path, records=False, deep=deep)
    if st.state == "running":
        return RunInfo("running", describe_holder(st.holder or {}))
    if st.state == "finished":
        return RunInfo("finished")
    if st.state == "damaged":
        return RunInfo("failed", str(refusal(st.damage[0])))
    if str(path) in failed:
        return RunInfo("failed", failed[str(path)])
    return RunInfo("started")


@dataclass
class _Index:
    """What the output root holds: run directories by arm, and failed records."""

    runs: dict[str, list[tuple[Path, dict[str, Any]]]]  # ticket checksum -> (dir, hparams.json)
    failed_dirs: dict[str, str]
    failed_cells: dict[tuple[str, str, str, int], str]  # (checksum, task, dataset, seed)
    deep: bool = True  # read_state's: read checkpoints and logs for damage

    @classmethod
    def read(cls, out: Path, deep: bool = True) -> _Index:
        runs: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
        for meta in sorted(out.glob(f"*/{HPARAMS_FILE}")):
            try:
                data = read_json(meta)
                runs.setdefault(data["identity"]["ticket"], []).append((meta.parent, data))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a run directory of a cell (or a damaged one)
        failed_dirs, failed_cells = {}, {}
        for rec in _records(out):
            prov = rec.get("provenance", {})
            if prov.get("status") != "failed":
                continue
            reason = str(prov.get("reason"))
            if prov.get("run_dir"):
                failed_dirs[prov["run_dir"]] = reason
            s = rec.get("setting", {})
            key = (
                rec["identity"]["ticket_checksum"],
                s.get("task"),
                s.get("dataset"),
                prov.get("seed"),
            )
            failed_cells[key] = reason
        return cls(runs, failed_dirs, failed_cells, deep)


def _records(out: Path) -> Iterable[dict[str, Any]]:
    for path in sorted((out / "records").rglob("*.json")):
        try:
            rec = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("identity"), dict):
            yield rec


def _arm_runs(index: _Index, cell: Cell, arm: str) -> list[Path]:
    m = cell.match
    assert m is not None
    found = []
    for path, meta in index.runs.get(arm, []):
        ident, hp = meta.get("identity", {}), meta.get("hparams", {})
        if hp.get("seed") != m.seed or any(ident.get(k) != v for k, v in m.identity.items()):
            continue
        if m.hparams is not None and hp != m.hparams:
            continue
        found.append(path)
    return found


def exit_status(folder: Path) -> dict[str, Any] | None:
    try:
        data = read_json(folder / EXIT_FILE)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _own(plan: Plan, cell: Cell, index: _Index) -> CellState | None:
    """done, running or failed from the cell's own files; None when none of these."""
    folder = cell_dir(plan, cell)
    held, holder = lock_holder(folder)
    if held:
        return CellState("running", describe_holder(holder or {}))
    ended = exit_status(folder)
    if ended is not None and ended.get("argv") != list(cell.argv):
        ended = None  # the study file changed since: that command is not this cell's
    ok = ended is not None and ended.get("rc") == 0
    if cell.kind == "search":
        runs = _search_runs(plan, cell, index)
        if runs:
            return CellState("done", "", tuple(runs))
    elif cell.match is not None:
        per_arm = [_arm_runs(index, cell, a) for a in cell.match.arms]
        runs = tuple(p for ps in per_arm for p in ps)
        infos = [read_run(p, index.failed_dirs, index.deep) for p in runs]
        finished = {p for p, i in zip(runs, infos) if i.state == "finished"}
        if all(finished.intersection(ps) for ps in per_arm):
            return CellState("done", "", runs)
        busy = [i.detail for i in infos if i.state == "running"]
        if busy:
            return CellState("running", busy[0], runs)
        reasons = [i.detail for i in infos if i.state == "failed"]
        reasons += _failed_records(index, cell)
        if reasons:
            return CellState("failed", reasons[0], runs)
    elif ok and cell.kind in ("data", "leaderboard"):
        return CellState("done")
    if ended is not None and ended.get("rc") != 0:
        return CellState("failed", f"exit {ended.get('rc')}: {ended.get('said', '')}".strip())
    return None


def _failed_records(index: _Index, cell: Cell) -> list[str]:
    m = cell.match
    assert m is not None
    task, dataset = m.identity.get("task"), m.identity.get("dataset")
    return [r for a in m.arms if (r := index.failed_cells.get((a, task, dataset, m.seed)))]


def _search_runs(plan: Plan, cell: Cell, index: _Index) -> list[Path]:
    """A finished search run whose ticket.json is the study's ticket file."""
    ticket = Path(cell.argv[cell.argv.index("--save-ticket") + 1])
    if not ticket.is_file():
        return []
    try:
        mine = read_json(ticket).get("checksum")
    except (OSError, ValueError, AttributeError):
        return []
    found = []
    for path in sorted(plan.study.out.glob("search_*/ticket.json")):
        try:
            finished = read_run(path.parent, index.failed_dirs, index.deep).state == "finished"
            if read_json(path).get("checksum") == mine and finished:
                found.append(path.parent)
        except (OSError, ValueError, AttributeError):
            continue
    return found


def _started(plan: Plan, cell: Cell, index: _Index) -> str:
    """The cell's run directories a killed run left (they resume), named."""
    if cell.match is None:
        return ""
    runs = [p for a in cell.match.arms for p in _arm_runs(index, cell, a)]
    started = [p for p in runs if read_run(p, index.failed_dirs, index.deep).state == "started"]
    return " ".join(str(p) for p in started)


def plan_states(plan: Plan, deep: bool = True) -> dict[str, CellState]:
    """Every cell's state, in plan order (deep: read_state's; the driver looks shallow)."""
    index = _Index.read(plan.study.out, deep)
    states: dict[str, CellState] = {}
    for cell in plan.cells:
        own = _own(plan, cell, index)
        if own is not None and not (cell.kind == "leaderboard" and own.state == "done"):
            states[cell.id] = own
            continue
        waiting = [d for d in cell.deps if states[d].state != "done"]
        if waiting:
            states[cell.id] = CellState("waiting", ", ".join(waiting))
        elif own is None and (started := _started(plan, cell, index)):
            states[cell.id] = CellState("ready", f"resumes {started}")
        else:
            states[cell.id] = own or CellState("ready")
    return states
