"""When to draw progress bars: one rule for every long loop (training, search, costs)."""

from __future__ import annotations

import sys


def show_progress(progress: bool | None) -> bool:
    """Progress bars only on a terminal, unless the caller says."""
    return progress if progress is not None else sys.stderr.isatty()
