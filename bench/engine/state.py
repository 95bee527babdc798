"""What a run directory holds, read from its files alone (no model is built, no tensor read).

Public API: `read_state(run_dir) -> RunState`, one frozen summary of a run directory (see
bench.engine.runfiles for the layout); `RunState.line()` is the one line `bench runs check`
prints, `RunState.as_dict()` its JSON; `RecordIndex` finds the records of many runs at
once (build one per out root when reading many runs). States, the first that applies:

    running    the run lock is held by a live process (`holder` says who)
    damaged    a file the suite wrote does not read, or is of another run (`damage`)
    stale-lock the lock names a holder that is gone (killed): nothing else is wrong
    finished   result.json reads
    failed     a failed record of this run, no result.json (`reason`)
    resumable  latest.pt reads (`step`, `epoch` reached)
    new        nothing to resume (planned, or killed before its first checkpoint)

Checkpoints carry the run's hash (`run_hash`) since this module exists; a checkpoint
without it (written before) is trusted for the run it sits in, as before, but is never
"proven" to be of this run (`RunState.proven`), so repair never falls back to one.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.engine.runfiles import (
    BEST_FILE,
    HPARAMS_FILE,
    LATEST_FILE,
    LOCK_FILE,
    PREVIOUS_FILE,
    RESULT_FILE,
    hash_of,
)
from bench.util.errors import BenchError
from bench.util.io import json_damage, read_json

__all__ = [
    "STATES",
    "CheckpointInfo",
    "Damage",
    "json_or_refuse",
    "RecordIndex",
    "RunState",
    "read_state",
    "refusal",
    "run_dirs",
]

STATES = ("running", "damaged", "stale-lock", "finished", "failed", "resumable", "new")
SEARCH_STATE_FILE = "search_state.pt"  # bench.search.loop.STATE_FILE (torch-free here)
CHECKPOINTS = (LATEST_FILE, PREVIOUS_FILE, BEST_FILE, SEARCH_STATE_FILE)


@dataclasses.dataclass(frozen=True)
class Damage:
    """One damaged file: which, and what is wrong with it in a few words."""

    file: Path
    what: str  # "zero bytes", "truncated: not JSON at byte 40", "checkpoint of another run ..."

    def __str__(self) -> str:
        return f"{self.file}: {self.what}"


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What a readable checkpoint says of itself (None: it does not say)."""

    file: Path
    run_hash: str | None
    epoch: int | None
    step: int | None


@dataclasses.dataclass(frozen=True)
class RunState:
    """A run directory's state (module docstring), and what it is a run of."""

    path: Path
    state: str
    kind: str | None = None
    run_hash: str | None = None
    ticket: str | None = None  # the ticket's name, else its checksum
    task: str | None = None
    dataset: str | None = None
    seed: int | None = None
    epoch: int | None = None  # epochs finished at the resume point (latest.pt)
    epochs: int | None = None  # epochs the run trains
    step: int | None = None  # optimizer steps at the resume point
    reason: str | None = None  # a failed run's recorded reason
    holder: Mapping[str, Any] | None = None  # the lock's holder (running, stale-lock)
    damage: tuple[Damage, ...] = ()
    record: Path | None = None  # this run's record, where it has one
    checkpoints: tuple[CheckpointInfo, ...] = ()  # the readable ones
    notes: tuple[str, ...] = ()

    def proven(self, name: str) -> CheckpointInfo | None:
        """Checkpoint `name` when it reads and names this run's hash inside."""
        found = [c for c in self.checkpoints if c.file.name == name]
        ok = found and self.run_hash is not None and found[0].run_hash == self.run_hash
        return found[0] if ok else None

    def damaged(self, name: str) -> Damage | None:
        """The damage of file `name` of this run (a record: its file name), if any."""
        return next((d for d in self.damage if d.file.name == name), None)

    def line(self) -> str:
        """One line: state, run, ticket, task/dataset, seed, step reached, and what is wrong."""
        reached = "-" if self.step is None else f"step {self.step}"
        if self.epoch is not None and self.epochs is not None:
            reached += f" (epoch {self.epoch}/{self.epochs})"
        where = f"{self.task or '?'}/{self.dataset or '?'}"
        seed = "?" if self.seed is None else self.seed
        tail = [str(d) for d in self.damage]
        if self.reason:
            tail.append(f"reason: {self.reason}")
        if self.holder is not None:
            tail.append(f"lock: {describe_holder(self.holder)}")
        tail += self.notes
        text = f"{self.state:<10} {self.path.name}  {self.ticket or '?'}  {where}  seed {seed}  "
        return text + reached + ("  " + "; ".join(tail) if tail else "")

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"], out["record"] = str(self.path), self.record and str(self.record)
        out["damage"] = [{"file": str(d.file), "what": d.what} for d in self.damage]
        out["checkpoints"] = [{**dataclasses.asdict(c), "file": str(c.file)}
                              for c in self.checkpoints]  # fmt: skip
        out["holder"] = None if self.holder is None else dict(self.holder)
        out["notes"] = list(self.notes)
        return out


def describe_holder(holder: Mapping[str, Any]) -> str:
    if not holder:
        return "held by a process that did not say who it is"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since')})"


def refusal(damage: Damage) -> BenchError:
    """The one-line error of a command that meets a damaged file of a run: the file, what
    is wrong, and the command that says more and repairs what it can."""
    out_root = damage.file.parent.parent
    return BenchError(f"{damage}; see and repair the run with: bench runs check {out_root} "
                      "--repair")  # fmt: skip


def json_or_refuse(path: Path) -> Any:
    """The JSON in `path`, a file of a run directory; `refusal` when it is damaged."""
    if what := json_damage(path):
        raise refusal(Damage(path, what))
    return read_json(path)


class RecordIndex:
    """The readable records under <out>/records, by the run directory name they name."""

    def __init__(self, out_root: str | os.PathLike[str]) -> None:
        from bench.runs.records import RECORDS_DIR

        self.out_root = Path(out_root)
        self.by_run: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
        self.unreadable: list[Damage] = []
        for path in sorted((self.out_root / RECORDS_DIR).rglob("*.json")):
            if what := json_damage(path):
                self.unreadable.append(Damage(path, what))
                continue
            rec = read_json(path)
            prov = rec.get("provenance") if isinstance(rec, dict) else None
            if not isinstance(prov, dict) or not isinstance(prov.get("run_dir"), str):
                self.unreadable.append(Damage(path, "not a result record"))
            elif not prov.get("evaluates"):  # a `bench eval` record is no run's own
                self.by_run.setdefault(Path(prov["run_dir"]).name, []).append((path, rec))

    def of(self, run_name: str, status: str) -> tuple[Path, dict[str, Any]] | None:
        """The newest record with `status` that names run `run_name`."""
        found = [(p, r) for p, r in self.by_run.get(run_name, [])
                 if r["provenance"].get("status") == status]  # fmt: skip
        return max(found, key=lambda x: str(x[1]["provenance"].get("timestamp"))) if found else None


# ---- the files, one by one ---------------------------------------------------------------
def _json_object(path: Path, damage: list[Damage]) -> dict[str, Any] | None:
    """The JSON object in `path` (None: absent or damaged, then added to `damage`)."""
    if not path.is_file():
        return None
    if what := json_damage(path):
        damage.append(Damage(path, what))
        return None
    obj = read_json(path)
    if not isinstance(obj, dict):
        damage.append(Damage(path, f"a JSON {type(obj).__name__}, not an object"))
        return None
    return obj


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _checkpoint(path: Path, meta: Mapping[str, Any] | None, damage: list[Damage]):
    """CheckpointInfo of a readable checkpoint; else None, and the damage noted."""
    from bench.engine.checkpoint import peek_checkpoint

    if not path.is_file():
        return None
    try:
        ck = peek_checkpoint(path)
    except BenchError as e:
        what = str(e).split(f"{path}: ", 1)[-1].split(f"{path} ", 1)[-1]
        damage.append(Damage(path, what))
        return None
    info = CheckpointInfo(path, ck.get("run_hash"), _int(ck.get("epoch")), _int(ck.get("step")))
    mine = hash_of(path.parent)
    if info.run_hash is not None and info.run_hash != mine:
        damage.append(Damage(path, f"checkpoint of another run (hash {info.run_hash})"))
        return None
    hp = (meta or {}).get("hparams")
    resumable = path.name in (LATEST_FILE, PREVIOUS_FILE)
    if resumable and info.run_hash is None and isinstance(hp, dict) and ck.get("hparams"):
        if ck["hparams"] != hp:  # written before run hashes: its hparams still tell
            damage.append(Damage(path, "checkpoint of another run (other hparams)"))
            return None
    return info


def _jsonl(path: Path, damage: list[Damage]) -> None:
    """A JSON-lines log: every line but a torn last one must parse (bench.util.io.read_jsonl)."""
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines[:-1]):
        try:
            json.loads(line) if line.strip() else None
        except ValueError:
            at = sum(len(x) + 1 for x in lines[:i])
            damage.append(Damage(path, f"line {i + 1} is not JSON (byte {at})"))
            return


def _of_other_run(path: Path, result: Mapping[str, Any], damage: list[Damage]) -> bool:
    prov = result.get("provenance")
    named = prov.get("run_dir") if isinstance(prov, dict) else None
    if isinstance(named, str) and Path(named).name != path.parent.name:
        damage.append(Damage(path, f"result of another run ({Path(named).name})"))
        return True
    return False


def lock_holder(path: Path) -> tuple[bool, dict[str, Any] | None]:
    """(held by a live process, the holder the lock file names or None)."""
    lock = path / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False, None
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        try:
            holder = json.loads(text) if text.strip() else None
        except ValueError:
            holder = {}
        holder = holder if isinstance(holder, dict) or holder is None else {}
        try:  # shared and at once: a holder's exclusive lock refuses it
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN), holder
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, holder
    finally:
        os.close(fd)


def _own_record(
    path: Path, result: Mapping[str, Any], index: RecordIndex, damage: list[Damage]
) -> tuple[Path | None, tuple[str, ...]]:
    """The record a finished run's result.json belongs at: (its path, notes)."""
    from bench.runs.records import record_path

    try:
        where = record_path(index.out_root, result)
    except (KeyError, TypeError, AttributeError):
        return None, ("result.json is not a result record",)
    if not where.is_file():
        return where, ("record missing",)
    if what := json_damage(where):
        damage.append(Damage(where, what))
        return where, ()
    rec = read_json(where)
    try:
        named = Path(rec["provenance"]["run_dir"]).name
        home = record_path(index.out_root, rec)
    except (KeyError, TypeError, AttributeError):
        damage.append(Damage(where, "not a result record"))
        return where, ()
    if home != where:  # its own fields name another file: copied over this one
        damage.append(Damage(where, f"record of another run ({named}, {home.name})"))
    elif named != path.name:  # another run of the same cell wrote it later (other hparams)
        return where, (f"record replaced by run {named}'s",)
    return where, ()


def _identity(path: Path, meta, result) -> dict[str, Any]:
    """ticket, task, dataset, seed from result.json, else hparams.json."""
    kind = path.name.rsplit("_", 1)[0] if hash_of(path) else None
    ident = (meta or {}).get("identity") or {}
    hp = (meta or {}).get("hparams") or {}
    out = {"kind": kind, "ticket": ident.get("ticket"), "task": ident.get("task") or kind,
           "dataset": ident.get("dataset"), "seed": _int(hp.get("seed")),
           "epochs": _int(hp.get("epochs"))}  # fmt: skip
    if isinstance(result, dict) and isinstance(result.get("identity"), dict):
        setting, prov = result.get("setting") or {}, result.get("provenance") or {}
        out["ticket"] = result["identity"].get("ticket") or out["ticket"]
        out["task"] = setting.get("task") or out["task"]
        out["dataset"] = setting.get("dataset") or out["dataset"]
        out["seed"] = _int(prov.get("seed")) if out["seed"] is None else out["seed"]
    return out


def _headline(running: bool, holder, damage, result, failed, latest) -> str:
    if running:
        return "running"
    if damage:
        return "damaged"
    if holder:
        return "stale-lock"
    if result is not None:
        return "finished"
    if failed is not None:
        return "failed"
    return "resumable" if latest is not None else "new"


def _other_files(path: Path, damage: list[Damage]) -> None:
    """Damage in a run's other JSON files and its logs."""
    for other in sorted(path.glob("*.json")):  # e.g. a search's ticket.json
        if other.name not in (HPARAMS_FILE, RESULT_FILE) and (what := json_damage(other)):
            damage.append(Damage(other, what))
    for log in sorted(path.glob("*.jsonl")):  # metrics.jsonl, a search's episodes and steps
        _jsonl(log, damage)


def read_state(
    run_dir: str | os.PathLike[str],
    *,
    lock: bool = True,
    records: RecordIndex | bool = True,
    deep: bool = True,
) -> RunState:
    """The state of run directory `run_dir` (module docstring), from its files alone.

    `lock`: look at the run lock (False: the caller holds it). `records`: check this run's
    record under <out>/records (the run directory's parent) too; pass one RecordIndex
    when reading many runs of one out root, False to skip records. `deep=False` takes the
    checkpoints and logs as they are without reading them (a driver that looks every
    second; the run itself refuses damage when it starts). Never raises for what is in
    the files; never writes.
    """
    path = Path(run_dir)
    running, holder = lock_holder(path) if lock else (False, None)
    damage: list[Damage] = []
    meta = _json_object(path / HPARAMS_FILE, damage)
    result = _json_object(path / RESULT_FILE, damage)
    if result is not None and _of_other_run(path / RESULT_FILE, result, damage):
        result = None
    if deep:
        checkpoints = tuple(
            c for name in CHECKPOINTS if (c := _checkpoint(path / name, meta, damage)) is not None
        )
        _other_files(path, damage)
    else:
        checkpoints = tuple(
            CheckpointInfo(path / name, None, None, None)
            for name in CHECKPOINTS
            if (path / name).is_file()
        )
    index = records if isinstance(records, RecordIndex) else None
    if records is True:
        index = RecordIndex(path.parent)
    record, notes, failed, found = None, (), None, None
    if index is not None and result is not None:
        if "setting" in result:  # a cell's result; a search's or supernet's has no record
            record, notes = _own_record(path, result, index, damage)
    elif index is not None:
        failed = index.of(path.name, "failed")
        found = failed or index.of(path.name, "finished")
        record = found[0] if found else None
    latest = next((c for c in checkpoints if c.file.name == LATEST_FILE), None)
    state = _headline(running, holder, damage, result, failed, latest)
    if state == "stale-lock":  # say what the run holds besides
        notes = (*notes, f"otherwise {_headline(False, None, [], result, failed, latest)}")
    ident = _identity(path, meta, result if result is not None else found and found[1])
    return RunState(
        path=path,
        state=state,
        run_hash=hash_of(path),
        epoch=latest and latest.epoch,
        step=latest and latest.step,
        reason=failed[1]["provenance"].get("reason") if failed else None,
        holder=holder,
        damage=tuple(damage),
        record=record,
        checkpoints=checkpoints,
        notes=notes,
        **ident,
    )


def run_dirs(out_root: str | os.PathLike[str]) -> list[Path]:
    """The run directories directly under `out_root` (named <kind>_<hash>), sorted."""
    return sorted(p for p in Path(out_root).iterdir() if p.is_dir() and hash_of(p))
