"""The exception types the CLI turns into one-line messages and exit codes."""

from collections.abc import Iterable


class BenchError(Exception):
    """Bad user input (file, field, name or dataset): shown as one line, exit code 2."""


class DataError(BenchError):
    """A data file met during a run that does not read: the run fails with a failed record
    naming the file (files are checked before runs start where that is cheap)."""


class RunsFailed(Exception):
    """Some runs of a command failed (their failed records are kept): one line, exit code 1."""


def check_all(checks: Iterable[tuple[bool, str]], what: str) -> None:
    """Raise BenchError "bad WHAT: MESSAGE" for the first (ok, message) check that fails."""
    for ok, msg in checks:
        if not ok:
            raise BenchError(f"bad {what}: {msg}")
