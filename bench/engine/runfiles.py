"""The files of a run directory and its name (<kind>_<hash>): the layout that run planning
(rundir), reading a run's state (state) and the train loop share. Imports nothing from bench."""

from __future__ import annotations

import os
import re
from pathlib import Path

HPARAMS_FILE = "hparams.json"
METRICS_FILE = "metrics.jsonl"
LATEST_FILE = "latest.pt"
BEST_FILE = "best.pt"
PREVIOUS_FILE = "previous.pt"
DAMAGED_DIR = "damaged"
RESULT_FILE = "result.json"
LOCK_FILE = "run.lock"
HASH_LENGTH = 12  # hex digits of sha256: 48 bits, ample for one user's runs
# What a run directory that exists already becomes (bench.engine.rundir.prepare_run).
MODES = ("new", "cover")

RUN_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_RUN_NAME = re.compile(rf"({RUN_KIND.pattern})_([0-9a-f]{{{HASH_LENGTH}}})")


def hash_of(path: str | os.PathLike[str]) -> str | None:
    """The run hash a run directory is named by (None: not named <kind>_<hash>)."""
    m = _RUN_NAME.fullmatch(Path(path).name)
    return m[2] if m else None


def is_finished(path: str | os.PathLike[str]) -> bool:
    """A run is finished once its caller wrote result.json."""
    return (Path(path) / RESULT_FILE).is_file()
