"""When to draw progress bars: one rule for every long loop (training, search, costs)."""

from __future__ import annotations

import logging
import sys


def show_progress(progress: bool | None) -> bool:
    """Progress bars only on a terminal and where status lines show (not under `bench -q`),
    unless the caller says."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() and logging.getLogger("bench").isEnabledFor(logging.INFO)
