"""Ranks: within a benchmark cell by mean metric, and per ticket across tasks (ranks.csv).

Cell rank: tickets of one cell ranked by mean metric in its direction (1 = best, ties share
the average rank).

Ticket rank (ranks.csv): per ticket compared with a full control, over its cells: the mean
relative difference vs full (%, the transfer score), the number of cells where accuracy is
kept (of those judged), and the mean cost saved vs full (parameters, GFLOPs and, where
timed side by side, latency). Sorted, and ranked, by cells kept, then mean relative
difference, then mean parameters saved (equal keys share a rank).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from scipy.stats import rankdata

from bench.report.collect import CELL_KEYS

__all__ = ["RANK_COLUMNS", "rank_cells", "ticket_ranks"]

RANK_COLUMNS = (
    *"rank ticket ticket_checksum backbone sam sharing stages density".split(),
    *"n_tasks n_cells cells_kept cells_lost cells_undecided mean_rel_vs_full".split(),
    *"params_saved gflops_saved latency_saved tasks".split(),
)


def rank_cells(rows: Sequence[dict[str, Any]]) -> None:
    """Set each finished row's `rank` within its cell."""
    cells: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["n"] > 0:
            cells[tuple(r[k] for k in CELL_KEYS)].append(r)
    for members in cells.values():
        sign = -1.0 if members[0]["higher_is_better"] else 1.0
        for r, rank in zip(members, rankdata([sign * r["mean"] for r in members])):
            r["rank"] = float(rank)


def _fmean(values: list[Any]) -> float | None:
    nums = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(nums) if nums else None


def _ticket_row(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    first = cells[0]
    verdicts = [r["verdict_accuracy"] for r in cells]
    return {
        **{k: first[k] for k in RANK_COLUMNS[1:8]},
        "n_tasks": len({r["task"] for r in cells}),
        "n_cells": len(cells),
        "cells_kept": verdicts.count("keeps"),
        "cells_lost": verdicts.count("loses"),
        "cells_undecided": verdicts.count("undecided"),
        "mean_rel_vs_full": _fmean([r["vs_full_rel"] for r in cells]),
        **{k: _fmean([r[k] for r in cells]) for k in ("params_saved", "gflops_saved")},
        "latency_saved": _fmean([r["latency_saved"] for r in cells]),
        "tasks": " ".join(sorted({r["task"] for r in cells})),
    }


def _key(r: Mapping[str, Any]) -> tuple[float, float, float]:
    def low(x: float | None) -> float:  # a missing mean sorts last
        return -math.inf if x is None else x

    return (-r["cells_kept"], -low(r["mean_rel_vs_full"]), -low(r["params_saved"]))


def ticket_ranks(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per ticket with a comparison to full, best first (see the module doc)."""
    per_ticket: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in summary:
        if r["vs_full_n"]:
            per_ticket[(r["ticket"], r["ticket_checksum"])].append(r)
    out = [_ticket_row(cells) for cells in per_ticket.values()]
    out.sort(key=lambda r: (_key(r), r["ticket"]))
    for r in out:
        r["rank"] = 1 + sum(_key(o) < _key(r) for o in out)
    return out
