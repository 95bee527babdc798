"""Run directories: out_root/<kind>_<hash>, the hash naming what the run computes.

The hash covers the canonical JSON of the caller's identity (dataset, model, ticket
checksum, split, ...) and ONLY the hyperparameters that differ from their dataclass
defaults. So the same experiment always lands in the same directory (skip if finished,
resume if not), and adding a hyperparameter with a default leaves old hashes alone.

Layout of a run directory:
    hparams.json   kind, hash, identity, full and non-default hparams (written first), and
                   `environment` (bench.environment) where the run started; a resume in
                   another environment (fingerprint) adds it to `resumed_environments`.
                   Neither enters the hash nor the identity check: a rerun on another
                   machine finds and resumes its run dir.
    metrics.jsonl  one record per finished epoch
    latest.pt      resume point (end of the last finished epoch)
    best.pt        weights of the best epoch on the selection split
    result.json    written by the caller when the run is complete; its presence = done
    run.lock       who holds the directory (pid, host, since): `prepare_run` takes an
                   exclusive flock on it, which the OS drops when the holder exits or is
                   killed, so a second process gets a one-line error naming the holder
                   and a killed holder's lock is simply taken over. Emptied on release.

A new start of a run directory also removes the temporary files (`.NAME.*.tmp`) of a write
that a kill interrupted: the lock guarantees nobody else is writing there.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime
import fcntl
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from bench.checkpoint_interval import (
    ENV_CHECKPOINT_EVERY,
    CheckpointEvery,
    checkpoint_every,
)
from bench.engine.distributed import barrier, broadcast_object, is_main_process
from bench.engine.hparams import HParams, nondefault
from bench.environment import environment
from bench.errors import BenchError
from bench.fingerprint import plain, value_sha256
from bench.io import HOST, atomic_write_json, read_json, remove_stale_temps

__all__ = [
    "BEST_FILE",
    "ENV_CHECKPOINT_EVERY",
    "HASH_LENGTH",
    "HPARAMS_FILE",
    "LATEST_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "MODES",
    "RESULT_FILE",
    "CheckpointEvery",
    "RunPlan",
    "add_mode_arg",
    "checkpoint_every",
    "hold_run",
    "is_finished",
    "prepare_run",
    "release_run",
    "run_dir",
    "run_hash",
]

HPARAMS_FILE = "hparams.json"
METRICS_FILE = "metrics.jsonl"
LATEST_FILE = "latest.pt"
BEST_FILE = "best.pt"
RESULT_FILE = "result.json"
LOCK_FILE = "run.lock"
MODES = ("new", "cover")
HASH_LENGTH = 12  # hex digits of sha256: 48 bits, ample for one user's runs

_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")


def run_hash(identity: dict[str, Any], hparams: HParams) -> str:
    """Short sha256 over the identity and the non-default hparams."""
    return value_sha256({"identity": identity, "hparams": nondefault(hparams)}, HASH_LENGTH)


def run_dir(
    out_root: str | os.PathLike[str], kind: str, identity: dict[str, Any], hparams: HParams
) -> Path:
    """out_root/<kind>_<hash> (the path only; `prepare_run` creates it)."""
    if not _KIND.fullmatch(kind):
        raise ValueError(f"run kind must match {_KIND.pattern}, not {kind!r}")
    return Path(out_root) / f"{kind}_{run_hash(identity, hparams)}"


def is_finished(path: str | os.PathLike[str]) -> bool:
    """A run is finished once its caller wrote result.json."""
    return (Path(path) / RESULT_FILE).is_file()


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


def _record(kind: str, identity: dict[str, Any], hparams: HParams, digest: str) -> dict[str, Any]:
    return {
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
        print(f"note: cannot lock {path} ({e.strerror}); not guarded against a second "
              "process", file=sys.stderr)  # fmt: skip
    if (old := _holder(fd)) and old.get("pid") != os.getpid():
        print(f"note: {path}: taking over from {_describe(old)}, which did not release it "
              "(killed?)", file=sys.stderr)  # fmt: skip
    since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    me = {"pid": os.getpid(), "host": HOST, "since": since, "argv": sys.argv[:1]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    _held[key] = fd


def hold_run(path: str | os.PathLike[str]) -> None:
    """Hold directory `path` (made if missing) as `prepare_run` holds a run directory:
    BenchError naming the holder while another live process holds it."""
    _lock(Path(path))


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
    out_root: Path, kind: str, identity: dict[str, Any], hparams: HParams, mode: str
) -> RunPlan:
    path = run_dir(out_root, kind, identity, hparams)
    record = _record(kind, identity, hparams, path.name.rsplit("_", 1)[1])
    _lock(path)
    if mode == "cover":
        _wipe(path)
    if is_finished(path):
        release_run(path)  # nothing left to guard: the caller only reads result.json
        return RunPlan(path, "skip")
    if removed := remove_stale_temps(path, any_writer=True):
        names = ", ".join(p.name for p in removed)
        print(f"note: removed what a killed write left in {path}: {names}", file=sys.stderr)
    meta = path / HPARAMS_FILE
    if meta.is_file():
        try:
            old = read_json(meta)
        except (OSError, ValueError) as e:
            raise BenchError(f"unreadable {meta}: {e}; rerun with --mode cover") from e
        # The hash is over these two, so a mismatch means a corrupt or hand-edited dir.
        if (
            old.get("identity") != record["identity"]
            or old.get("nondefault") != record["nondefault"]
        ):
            raise BenchError(f"{meta} describes a different run; rerun with --mode cover")
        _keep_environments(old, record)
    atomic_write_json(meta, record)
    return RunPlan(path, "resume" if (path / LATEST_FILE).is_file() else "start")


def prepare_run(
    out_root: str | os.PathLike[str],
    kind: str,
    identity: dict[str, Any],
    hparams: HParams,
    *,
    mode: str = "new",
) -> RunPlan:
    """Find or make the run directory and say whether to skip, resume or start.

    mode "new": skip a finished run, resume an unfinished one, else start.
    mode "cover": wipe the directory and start over.
    Unless finished, this process then holds the directory (see LOCK_FILE) until
    `release_run` or its exit; BenchError if another live process holds it. Under
    torchrun every rank must call this; rank 0 touches the filesystem (and holds the lock)
    and the others receive its plan (so a "cover" wipe can't race another rank's read).
    """
    if mode not in MODES:
        raise BenchError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    outcome: RunPlan | BenchError | None = None
    if is_main_process():
        try:
            outcome = _plan_here(Path(out_root), kind, identity, hparams, mode)
        except BenchError as e:
            outcome = e  # hand it to the other ranks too, or they would wait forever
    outcome = broadcast_object(outcome)
    barrier()
    if isinstance(outcome, BenchError):
        raise outcome
    assert outcome is not None
    return outcome


def add_mode_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--mode {new,cover}` and `--checkpoint-every`: the run-level flags (bench.cliargs')."""
    from bench.cliargs import add_mode_flag

    add_mode_flag(parser)  # type: ignore[arg-type]
