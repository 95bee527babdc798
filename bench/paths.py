"""Where the suite looks for data and keeps derived files; file fingerprints; path-safe names."""

from __future__ import annotations

import hashlib
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


def file_sha256(path: str | os.PathLike[str], length: int | None = None) -> str:
    """Hex sha256 of a file's bytes (first `length` digits when given)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def slug(text: str) -> str:
    """`text` as one safe file-name part: runs of other characters become "_"."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
