"""The exception types the CLI turns into one-line messages and exit codes."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def one_line(exc: BaseException) -> str:
    """An exception as `Type: message` on one line (the CLI prints BenchError as one line)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BenchError(Exception):
    """Bad user input (file, field, name or dataset): shown as one line, exit code 2."""


class DataError(BenchError):
    """A data file met during a run that does not read: the run fails with a failed record
    naming the file (files are checked before runs start where that is cheap)."""


class RunsFailed(Exception):
    """Some runs of a command failed (their failed records are kept): one line, exit code 1."""


def check_runs(records: Sequence[Mapping[str, Any]]) -> None:
    """RunsFailed when any record of a command's runs says failed (the records are kept, and
    scripts must be able to tell)."""
    failed = [r for r in records if r.get("provenance", {}).get("status") == "failed"]
    if failed:
        raise RunsFailed(f"{len(failed)} of {len(records)} runs failed (their records say why)")


def check_all(checks: Iterable[tuple[bool, str]], what: str) -> None:
    """Raise BenchError "bad WHAT: MESSAGE" for the first (ok, message) check that fails."""
    for ok, msg in checks:
        if not ok:
            raise BenchError(f"bad {what}: {msg}")
