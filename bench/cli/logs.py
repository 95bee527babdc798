"""Status output: the `bench` and `tasks` loggers, set up once by the CLI.

Every module logs through `logging.getLogger(__name__)`; `setup_logging` gives the
package loggers one handler that writes each line to stderr as-is (debug lines name their
logger), through tqdm so that a running progress bar is cleared and redrawn around it.
Stdout is left to results (tables, records, JSON).
"""

from __future__ import annotations

import logging
import sys

# The packages whose status lines `bench` shows (a task package logs under tasks.*).
PACKAGES = ("bench", "tasks")
QUIET, NORMAL, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


class _Format(logging.Formatter):
    """The message alone, as the print helpers wrote it; debug lines say where they are from."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"debug {record.name}: {text}" if record.levelno < logging.INFO else text


class _BarSafe(logging.Handler):
    """Writes to the current sys.stderr (so pytest's capture sees it) via tqdm.write."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm  # imported on the first line only: `bench --help` stays light

            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001  (logging's contract: a failed write never raises)
            self.handleError(record)


_handler = _BarSafe()
_handler.setFormatter(_Format())


def setup_logging(level: int = NORMAL) -> None:
    """Show the package loggers' lines from `level` up (QUIET, NORMAL or VERBOSE); repeat
    calls change the level only (one handler per process)."""
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if _handler not in logger.handlers:
            logger.addHandler(_handler)
