"""`bench leaderboard`'s job: records from one or several output roots become the files
under <out>/leaderboards/ and the printed table.

Files (always built from every record; filters never touch them):
  <task>.csv     one row per run, finished and failed, with the record it came from
  summary.csv    per benchmark cell x ticket: seed statistics, paired differences to the
                 full and none controls with their intervals, share of gain, savings,
                 verdicts (bench.report.summary)
  ranks.csv      per ticket across tasks (bench.report.rank)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import FORMATS
from bench.report.collect import RUN_COLUMNS, collect
from bench.report.export import columns, to_csv, to_latex, to_markdown
from bench.report.rank import RANK_COLUMNS, ticket_ranks
from bench.report.summary import SUMMARY_COLUMNS, TOLERANCE_PCT, summarize
from bench.runs.records import RECORDS_DIR
from bench.util.errors import BenchError
from bench.util.io import atomic_write_text

__all__ = ["LEADERBOARD_DIR", "Leaderboard", "build", "leaderboard", "write_tables"]

LEADERBOARD_DIR = "leaderboards"
Filter = str | Sequence[str] | None


@dataclass
class Leaderboard:
    """Everything `bench leaderboard` shows: runs, cell x ticket summaries and ticket ranks."""

    runs: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    ranks: list[dict[str, Any]]
    tolerance_pct: float


def build(
    out_root: str | Path,
    *more_roots: str | Path,
    tolerance_pct: float = TOLERANCE_PCT,
) -> Leaderboard:
    """Collect every record under each root's records/ and summarise it."""
    runs = collect(out_root, *more_roots)
    if not runs:
        where = ", ".join(str(Path(r) / RECORDS_DIR) for r in (out_root, *more_roots))
        raise BenchError(f"{where}: no result records (run bench train or transfer)")
    summary = summarize(runs, tolerance_pct=tolerance_pct)
    return Leaderboard(runs, summary, ticket_ranks(summary), tolerance_pct)


def _matches(value: Any, pattern: Filter) -> bool:
    if pattern is None:
        return True
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return any(fnmatch.fnmatchcase(str(value), p) for p in patterns)


def _filter_tag(**filters: Filter) -> str:
    parts = []
    for name, pattern in filters.items():
        if pattern is not None:
            text = pattern if isinstance(pattern, str) else "+".join(pattern)
            parts.append(f"{name}-{re.sub(r'[^A-Za-z0-9.-]+', '_', text)}")
    return "".join(f"__{p}" for p in parts)


def write_tables(out_root: str | Path, lb: Leaderboard) -> list[Path]:
    """Write <task>.csv per task, summary.csv and ranks.csv atomically; return their paths."""
    out = Path(out_root) / LEADERBOARD_DIR
    written = []
    for task in sorted({r["task"] for r in lb.runs}):
        rows = [r for r in lb.runs if r["task"] == task]
        path = out / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', task)}.csv"
        atomic_write_text(path, to_csv(columns(RUN_COLUMNS, rows, "extra_"), rows))
        written.append(path)
    for name, cols, rows in (
        ("summary", columns(SUMMARY_COLUMNS, lb.summary, "extra_"), lb.summary),
        ("ranks", list(RANK_COLUMNS), lb.ranks),
    ):
        path = out / f"{name}.csv"
        atomic_write_text(path, to_csv(cols, rows))
        written.append(path)
    return written


def leaderboard(
    out_root: str | Path,
    *,
    more_roots: Sequence[str | Path] = (),
    fmt: str = "csv",
    task: Filter = None,
    dataset: Filter = None,
    ticket: Filter = None,
    tolerance_pct: float = TOLERANCE_PCT,
    plot: bool = False,
) -> tuple[str, list[Path]]:
    """Collect the records under `out_root` (and `more_roots`), write the leaderboards
    under `out_root` and return the summary table as text in `fmt` (csv, md or latex) with
    the paths written.

    Filters are shell-style globs (or lists of them) on task, dataset and ticket name; they
    shape the returned table, its md/latex file and the plots, never the CSV data files.
    Comparisons and cell ranks always use every ticket (a ticket's controls stay in scope);
    the ticket ranks are over the cells left by the task and dataset filters.
    `tolerance_pct` sets the accuracy verdicts (and the caption), never a number.
    """
    if fmt not in FORMATS:
        raise BenchError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not tolerance_pct >= 0:
        raise BenchError(f"--tolerance {tolerance_pct}: expected a percentage >= 0")
    lb = build(out_root, *more_roots, tolerance_pct=tolerance_pct)
    written = write_tables(out_root, lb)
    in_scope = [
        r for r in lb.summary if _matches(r["task"], task) and _matches(r["dataset"], dataset)
    ]
    summary = [r for r in in_scope if _matches(r["ticket"], ticket)]
    if not summary:
        raise BenchError(
            f"{Path(out_root) / RECORDS_DIR}: no records match --task {task or '*'} "
            f"--dataset {dataset or '*'} --ticket {ticket or '*'}"
        )
    ranks = [r for r in ticket_ranks(in_scope) if _matches(r["ticket"], ticket)]
    tag = _filter_tag(task=task, dataset=dataset, ticket=ticket)
    out = Path(out_root) / LEADERBOARD_DIR
    if fmt == "csv":
        text = to_csv(columns(SUMMARY_COLUMNS, summary, "extra_"), summary)
    else:
        export = to_markdown if fmt == "md" else to_latex
        text = export(summary, ranks, tolerance_pct)
        path = out / f"summary{tag}.{'md' if fmt == 'md' else 'tex'}"
        atomic_write_text(path, text)
        written.append(path)
    if plot:
        from bench.report.plots import plot_leaderboard

        written += plot_leaderboard(summary, out / f"plots{tag}")
    return text, written
