"""Run directories: out_root/<kind>_<hash>, the hash naming what the run computes.

The hash covers the canonical JSON of the caller's identity (dataset, model, ticket
checksum, split, ...) and ONLY the hyperparameters that differ from their dataclass
defaults. So the same experiment always lands in the same directory (skip if finished,
resume if not), and adding a hyperparameter with a default leaves old hashes alone.

Layout of a run directory:
    hparams.json   kind, hash, identity, full and non-default hparams (written first), and
                   `environment` (bench.util.environment) where the run started; a resume in
                   another environment (fingerprint) adds it to `resumed_environments`.
                   Neither enters the hash nor the identity check: a rerun on another
                   machine finds and resumes its run dir.
    metrics.jsonl  one record per finished epoch
    latest.pt      resume point (end of the last finished epoch, or a checkpoint inside one);
                   it and best.pt hold `run_hash`, the directory's hash (written since
                   damaged runs are diagnosed: older checkpoints lack it)
    previous.pt    the resume point before latest.pt (a hard link kept when latest.pt is
                   replaced): what `bench runs check --repair` falls back to when latest.pt
                   is damaged
    best.pt        weights of the best epoch on the selection split
    result.json    written by the caller when the run is complete; its presence = done
    run.lock       who holds the directory (pid, host, since): `prepare_run` takes an
                   exclusive flock on it, which the OS drops when the holder exits or is
                   killed, so a second process gets a one-line error naming the holder
                   and a killed holder's lock is simply taken over. Emptied on release.
    damaged/       files `bench runs check --repair` moved aside (never deleted)

A new start of a run directory also removes the temporary files (`.NAME.*.tmp`) of a write
that a kill interrupted: the lock guarantees nobody else is writing there.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime
import fcntl
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from bench.engine.checkpoint_interval import (
    ENV_CHECKPOINT_EVERY,
    CheckpointEvery,
    checkpoint_every,
)
from bench.engine.hparams import HParams, nondefault
from bench.engine.runfiles import (  # noqa: F401  (re-exported: the run layout)
    BEST_FILE,
    DAMAGED_DIR,
    HASH_LENGTH,
    HPARAMS_FILE,
    LATEST_FILE,
    LOCK_FILE,
    METRICS_FILE,
    MODES,
    PREVIOUS_FILE,
    RESULT_FILE,
    RUN_KIND,
    hash_of,
    is_finished,
)
from bench.engine.state import read_state, refusal
from bench.util.environment import environment
from bench.util.errors import BenchError
from bench.util.fingerprint import plain, value_sha256
from bench.util.io import HOST, atomic_write_json, read_json, remove_stale_temps

__all__ = [
    "BEST_FILE",
    "DAMAGED_DIR",
    "ENV_CHECKPOINT_EVERY",
    "HASH_LENGTH",
    "HPARAMS_FILE",
    "LATEST_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "MODES",
    "PREVIOUS_FILE",
    "RESULT_FILE",
    "CheckpointEvery",
    "RunPlan",
    "checkpoint_every",
    "hash_of",
    "hold_run",
    "is_finished",
    "prepare_run",
    "release_run",
    "run_dir",
    "run_hash",
]

_log = logging.getLogger(__name__)


def run_hash(identity: dict[str, Any], hparams: HParams) -> str:
    """Short sha256 over the identity and the non-default hparams."""
    return value_sha256({"identity": identity, "hparams": nondefault(hparams)}, HASH_LENGTH)


def run_dir(
    out_root: str | os.PathLike[str], kind: str, identity: dict[str, Any], hparams: HParams
) -> Path:
    """out_root/<kind>_<hash> (the path only; `prepare_run` creates it)."""
    if not RUN_KIND.fullmatch(kind):
        raise ValueError(f"run kind must match {RUN_KIND.pattern}, not {kind!r}")
    return Path(out_root) / f"{kind}_{run_hash(identity, hparams)}"


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What to do with a run directory.

    action: "skip" (finished: read result.json), "resume" (latest.pt exists) or "start".
    """

    path: Path
    action: Literal["skip", "resume", "start"]

    @property
    def result_path(self) -> Path:
        return self.path / RESULT_FILE


def _record(
    kind: str, identity: dict[str, Any], hparams: HParams, digest: str, recipe: dict | None
) -> dict[str, Any]:
    return {
        **({"recipe": plain(recipe, "recipe")} if recipe else {}),
        "kind": kind,
        "hash": digest,
        "identity": plain(identity, "identity"),
        "hparams_class": type(hparams).__name__,
        "hparams": hparams.to_dict(),
        "nondefault": nondefault(hparams),
        "environment": environment(),
    }


def _keep_environments(old: dict[str, Any], record: dict[str, Any]) -> None:
    """A resumed run keeps the environment it started in; other ones are appended."""
    first = old.get("environment")
    if not isinstance(first, dict):
        return  # written before environments were recorded: this one becomes the first
    later = [e for e in old.get("resumed_environments") or [] if isinstance(e, dict)]
    now = record["environment"]
    known = {e.get("fingerprint") for e in (first, *later)}
    if now.get("fingerprint") not in known:
        later.append(now)
    record["environment"] = first
    if later:
        record["resumed_environments"] = later


# ---- the run lock ------------------------------------------------------------------------
_held: dict[Path, int] = {}  # run directory -> fd of the lock file this process holds


def _holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('since')})"


def hold_run(path: str | os.PathLike[str]) -> None:
    """Hold run directory `path` (as `prepare_run` does) to change its files; BenchError
    naming the holder if a live process holds it. `release_run` lets go."""
    _lock(Path(path))


def _lock(path: Path) -> None:
    """Hold run directory `path` for this process; BenchError naming the holder if another
    live process holds it. Re-entrant within a process."""
    key = path.resolve()
    if key in _held:
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(_holder(fd))
        os.close(fd)
        raise BenchError(
            f"{path} is in use by {holder}: wait for that run to finish, or stop it"
        ) from None
    except OSError as e:  # a filesystem without locks: go on, as before locks existed
        _log.warning(f"note: cannot lock {path} ({e.strerror}); not guarded against a second "
                     "process")  # fmt: skip
    if (old := _holder(fd)) and old.get("pid") != os.getpid():
        _log.warning(f"note: {path}: taking over from {_describe(old)}, which did not release "
                     "it (killed?)")  # fmt: skip
    since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    me = {"pid": os.getpid(), "host": HOST, "since": since, "argv": sys.argv[:1]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    _held[key] = fd


def release_run(path: str | os.PathLike[str]) -> None:
    """Let go of a run directory this process holds (no-op otherwise)."""
    fd = _held.pop(Path(path).resolve(), None)
    if fd is not None:
        os.ftruncate(fd, 0)  # an empty lock file: released cleanly, nothing to take over
        os.close(fd)  # closing drops the flock


@atexit.register
def _release_all() -> None:
    """A process that ends normally releases what it holds (a killed one cannot: the OS
    drops its flocks, and its lock file still names it)."""
    for path in list(_held):
        release_run(path)


def _wipe(path: Path) -> None:
    """`--mode cover`: empty the (held) run directory, keeping its lock file."""
    for child in path.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _plan_here(
    out_root: Path,
    kind: str,
    identity: dict[str, Any],
    hparams: HParams,
    mode: str,
    recipe: dict[str, Any] | None,
) -> RunPlan:
    path = run_dir(out_root, kind, identity, hparams)
    record = _record(kind, identity, hparams, path.name.rsplit("_", 1)[1], recipe)
    _lock(path)
    if mode == "cover":
        _wipe(path)
    else:
        try:
            _refuse_damaged(path)
        except BenchError:
            release_run(path)
            raise
    meta = path / HPARAMS_FILE
    if is_finished(path):
        if not meta.is_file():  # moved aside by a repair: what it said, the hash proves
            atomic_write_json(meta, record)
        release_run(path)  # nothing left to guard: the caller only reads result.json
        return RunPlan(path, "skip")
    if removed := remove_stale_temps(path, any_writer=True):
        names = ", ".join(p.name for p in removed)
        _log.warning(f"note: removed what a killed write left in {path}: {names}")
    if meta.is_file():
        try:
            old = read_json(meta)
        except (OSError, ValueError) as e:
            raise BenchError(f"unreadable {meta}: {e}; rerun with --mode cover") from None
        # The hash is over these two, so a mismatch means a corrupt or hand-edited dir.
        if (
            old.get("identity") != record["identity"]
            or old.get("nondefault") != record["nondefault"]
        ):
            raise BenchError(f"{meta} describes a different run; rerun with --mode cover")
        _keep_environments(old, record)
    atomic_write_json(meta, record)
    return RunPlan(path, "resume" if (path / LATEST_FILE).is_file() else "start")


def _refuse_damaged(path: Path) -> None:
    """BenchError naming the first damaged file of run directory `path` and the repair."""
    state = read_state(path, lock=False, records=False)
    if state.damage:
        raise refusal(state.damage[0])


def prepare_run(
    out_root: str | os.PathLike[str],
    kind: str,
    identity: dict[str, Any],
    hparams: HParams,
    *,
    mode: str = "new",
    recipe: dict[str, Any] | None = None,
) -> RunPlan:
    """Find or make the run directory and say whether to skip, resume or start.

    mode "new": skip a finished run, resume an unfinished one, else start.
    mode "cover": wipe the directory and start over.
    A damaged run directory (bench.engine.state) is refused with a BenchError naming the
    file and the `bench runs check --repair` command. `recipe`: what rebuilds the run's
    cell to re-score it (kept in hparams.json, outside the hash; bench.runs.repair).
    Unless finished, this process then holds the directory (see LOCK_FILE) until
    `release_run` or its exit; BenchError if another live process holds it. Under
    torchrun every rank must call this; rank 0 touches the filesystem (and holds the lock)
    and the others receive its plan (so a "cover" wipe can't race another rank's read).
    """
    # Here, not at the top: the study's job processes take run locks without torch.
    from bench.engine.distributed import barrier, broadcast_object, is_main_process

    if mode not in MODES:
        raise BenchError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    outcome: RunPlan | BenchError | None = None
    if is_main_process():
        try:
            outcome = _plan_here(Path(out_root), kind, identity, hparams, mode, recipe)
        except BenchError as e:
            outcome = e  # hand it to the other ranks too, or they would wait forever
    outcome = broadcast_object(outcome)
    barrier()
    if isinstance(outcome, BenchError):
        raise outcome
    assert outcome is not None
    _log.debug(f"{outcome.action} {outcome.path} (mode {mode}; identity {identity})")
    return outcome
