"""Where the suite looks for data and keeps derived files, and path-safe names."""

from __future__ import annotations

import os
import re
from pathlib import Path

ENV_DATA_ROOT = "TICKETBENCH_DATA"
ENV_CACHE = "TICKETBENCH_CACHE"


def default_data_root() -> Path:
    """Where datasets are looked for without --data-root: $TICKETBENCH_DATA, else ./data."""
    return Path(os.environ.get(ENV_DATA_ROOT) or "data")


def default_cache_dir() -> Path:
    """Derived files (decompressed idx, density maps): $TICKETBENCH_CACHE, else
    $XDG_CACHE_HOME/ticketbench or ~/.cache/ticketbench."""
    if env := os.environ.get(ENV_CACHE):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ticketbench"


def slug(text: str) -> str:
    """`text` as one safe file-name part: runs of other characters become "_"."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
