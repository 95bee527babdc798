"""The safe repairs of `bench runs check --repair`, each one said; nothing is deleted.

A damaged file is first hard-linked (or copied) into the run's damaged/ folder, and only
then replaced or unlinked, each by one atomic rename: a SIGKILL anywhere leaves every file
either as it was (plus its copy in damaged/) or repaired. What is done, per file:
    result.json  restored from this run's record (the same dict: cell.py writes both), else
                 re-scored from the final checkpoint by the one run-and-score path (a
                 classification run, from the recipe in hparams.json), else moved aside so
                 that a rerun of its command re-scores it
    record       rewritten from result.json
    latest.pt    replaced by previous.pt when that names this run's hash inside (the steps
                 after it are trained again by the next run), else moved aside
    metrics.jsonl rewritten from latest.pt's history
    others       (hparams.json, best.pt, previous.pt, a search's state, ticket and logs)
                 moved aside, saying what the run then lacks
    run.lock     a dead holder's lock is taken over and released (emptied)
A running run is left alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.engine.rundir import (
    BEST_FILE,
    DAMAGED_DIR,
    HPARAMS_FILE,
    LATEST_FILE,
    METRICS_FILE,
    PREVIOUS_FILE,
    RESULT_FILE,
    hold_run,
    release_run,
)
from bench.engine.state import RecordIndex, RunState, describe_holder, read_state
from bench.util.errors import BenchError
from bench.util.io import (
    atomic_write_json,
    atomic_write_text,
    link_or_copy,
    read_json,
    remove_stale_temps,
)

__all__ = ["quarantine", "repair_run"]

Say = Callable[[str], None]


def quarantine(file: Path, run_dir: Path, name: str | None = None) -> Path:
    """Link (or copy) `file` into run_dir/damaged/ under a name not taken yet; the original
    stays until the caller replaces or unlinks it."""
    folder = run_dir / DAMAGED_DIR
    base = name or file.name
    target, n = folder / base, 1
    while target.exists():
        target, n = folder / f"{base}.{n}", n + 1
    link_or_copy(file, target)
    return target


def _aside(file: Path, run_dir: Path, why: str, say: Say) -> None:
    moved = quarantine(file, run_dir)
    file.unlink()
    say(f"moved {file.name} to {moved.relative_to(run_dir.parent)}: {why}")


def _latest(state: RunState, say: Say) -> None:
    """Fall back from a damaged latest.pt to previous.pt, if it is proven of this run."""
    path = state.path
    prev = state.proven(PREVIOUS_FILE)
    if prev is None:
        why = "no earlier checkpoint names this run's hash inside"
        finished = (path / RESULT_FILE).is_file() and state.damaged(RESULT_FILE) is None
        then = "the run is finished" if finished else "the next run of its command starts it over"
        _aside(path / LATEST_FILE, path, f"{why}; {then}", say)
        return
    moved = quarantine(path / LATEST_FILE, path)
    link_or_copy(path / PREVIOUS_FILE, path / LATEST_FILE)
    say(f"moved latest.pt to {moved.relative_to(path.parent)} and fell back to previous.pt "
        f"(epoch {prev.epoch}, step {prev.step}): the steps after step {prev.step} are lost "
        "and the next run of its command trains them again")  # fmt: skip


def _metrics(path: Path, say: Say) -> None:
    from bench.engine.checkpoint import peek_checkpoint

    moved = quarantine(path / METRICS_FILE, path)
    try:
        history = peek_checkpoint(path / LATEST_FILE)["history"]
    except (BenchError, KeyError):
        (path / METRICS_FILE).unlink()
        say(f"moved metrics.jsonl to {moved.relative_to(path.parent)}: no readable latest.pt "
            "holds its history")  # fmt: skip
        return
    lines = "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in history)
    atomic_write_text(path / METRICS_FILE, lines)
    say(f"rewrote metrics.jsonl from latest.pt's history ({len(history)} epochs; the damaged "
        f"one is {moved.relative_to(path.parent)})")  # fmt: skip


_CONSEQUENCE = {
    HPARAMS_FILE: "the next run of its command writes it anew",
    BEST_FILE: "the run's selected weights are lost; rerun it with --mode cover",
    PREVIOUS_FILE: "a spare resume point; latest.pt is the one used",
}
_OTHERWISE = "if the next run of its command refuses the run without it, rerun with --mode cover"


def _files(state: RunState, say: Say) -> None:
    """Repair or move aside each damaged file inside the run directory (result.json aside)."""
    for d in state.damage:
        if d.file.parent != state.path or d.file.name == RESULT_FILE:
            continue
        if d.file.name == LATEST_FILE:
            _latest(state, say)
        elif d.file.name == METRICS_FILE:
            _metrics(state.path, say)
        else:
            _aside(d.file, state.path, _CONSEQUENCE.get(d.file.name, _OTHERWISE), say)


def _cell_of(path: Path):
    """The cell and Init of the finished run in `path`, from the recipe in its hparams.json
    (BenchError saying why it cannot be rebuilt)."""
    from bench.engine.checkpoint import peek_checkpoint
    from bench.engine.hparams import TrainHParams
    from bench.runs.classify import ClassificationCell
    from bench.runs.pretrained import Init

    meta = read_json(path / HPARAMS_FILE) if (path / HPARAMS_FILE).is_file() else {}
    recipe = meta.get("recipe")
    if not isinstance(recipe, dict) or recipe.get("task") != "classification":
        raise BenchError("its hparams.json holds no classification recipe (a transfer run, or "
                         "one made before recipes were kept)")  # fmt: skip
    hp = TrainHParams.from_dict(meta["hparams"])
    latest = peek_checkpoint(path / LATEST_FILE) if (path / LATEST_FILE).is_file() else {}
    if latest.get("epoch") != hp.epochs or latest.get("batch"):
        raise BenchError(f"its latest.pt is not at the end of training (epoch {hp.epochs})")
    i = recipe["init"]
    init = Init(i["kind"], i["path"] and Path(i["path"]), i["checksum"], i["source"] or {})
    return ClassificationCell.from_recipe(recipe, hp), init


def _rescore(path: Path, out_root: Path, device: str) -> dict[str, Any]:
    """Score the finished run in `path` anew by the one run-and-score path (bench.runs.cell),
    its damaged record (if any) kept in damaged/ first."""
    from bench.runs.cell import cell_setting, rescore
    from bench.runs.records import record_path
    from bench.util.io import json_damage

    cell, init = _cell_of(path)
    s = cell_setting(cell)
    stub = {"setting": {k: s[k] for k in ("task", "dataset", "head", "eval_split")},
            "identity": {"ticket": s["ticket"].name, "ticket_checksum": s["ticket"].checksum},
            "provenance": {"seed": s["seed"]}}  # fmt: skip
    old = record_path(out_root, stub)
    if old.is_file() and json_damage(old):
        quarantine(old, path, f"record-{old.name}")
    return rescore(cell, path, out_root, device, init)


def _result(state: RunState, index: RecordIndex, device: str, say: Say) -> None:
    """A damaged result.json: from its record, else re-scored, else moved aside."""
    path, file = state.path, state.path / RESULT_FILE
    found = index.of(path.name, "finished")
    if found is not None:
        moved = quarantine(file, path)
        atomic_write_json(file, found[1])
        say(f"restored result.json from its record {found[0]} (the damaged one is "
            f"{moved.relative_to(path.parent)})")  # fmt: skip
        return
    moved = quarantine(file, path)
    say(f"re-scoring {path.name} from its final checkpoint (no record of it to restore from)")
    try:
        record = _rescore(path, index.out_root, device)
    except BenchError as e:
        file.unlink()
        say(f"cannot re-score it here: {e}; moved result.json to "
            f"{moved.relative_to(path.parent)}: rerun the command that made the run, which "
            "scores its final checkpoint without training again")  # fmt: skip
        return
    if record.get("provenance", {}).get("status") != "finished":
        say(f"re-scoring failed: {record.get('provenance', {}).get('reason')}")
        return
    say(f"re-scored {path.name}: {record['result']['metric']} {record['result']['value']}; "
        f"rewrote result.json and its record (the damaged one is "
        f"{moved.relative_to(path.parent)})")  # fmt: skip


def _record(state: RunState, out_root: Path, say: Say) -> None:
    """Rewrite this run's record from its (readable) result.json."""
    from bench.runs.records import write_record

    result = read_json(state.path / RESULT_FILE)
    bad = state.record if state.record is not None and state.damaged(state.record.name) else None
    if bad is not None:
        quarantine(bad, state.path, f"record-{bad.name}")
    path = write_record(out_root, result)
    what = f"rewrote the damaged record {path}" if bad else f"wrote its missing record {path}"
    say(f"{what} from result.json")


def repair_run(
    run_dir: Path, index: RecordIndex, *, device: str = "cpu", say: Say = print
) -> RunState:
    """Repair run directory `run_dir` as far as is safe (module docstring), saying each
    thing done; returns its state afterwards. A running run is left alone."""
    before = read_state(run_dir, records=index)
    if before.state == "running":
        return before
    try:
        hold_run(run_dir)  # a dead holder's lock is taken over here
    except BenchError as e:  # a run started since: it is left alone
        say(f"left alone: {e}")
        return read_state(run_dir, records=index)
    try:
        if before.holder:
            say(f"removed the stale lock of {describe_holder(before.holder)}")
        for folder in (run_dir, run_dir / DAMAGED_DIR):
            if folder.is_dir() and (left := remove_stale_temps(folder, any_writer=True)):
                say(f"removed what a killed write left: {', '.join(p.name for p in left)}")
        state = read_state(run_dir, lock=False, records=index)
        _files(state, say)
        if state.damaged(RESULT_FILE) is not None:
            _result(state, index, device, say)
        state = read_state(run_dir, lock=False, records=RecordIndex(index.out_root))
        readable = (run_dir / RESULT_FILE).is_file() and state.damaged(RESULT_FILE) is None
        if readable and state.record is not None:
            if state.damaged(state.record.name) or "record missing" in state.notes:
                _record(state, index.out_root, say)
    finally:
        release_run(run_dir)
    return read_state(run_dir, records=RecordIndex(index.out_root))
