"""`bench leaderboard`: result records -> leaderboards, a summary, a printed table, plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli import args as cliargs
from bench.cli import catalog

HELP = (
    "Collect result records into leaderboards/<task>.csv (one row per run, failures "
    "kept) and summary.csv (mean, std, n over seeds; transfer score vs the full and none "
    "controls; cost saved vs full; average rank), print a table, optionally plot."
)
EXAMPLE = "bench leaderboard --out runs --format md --task crowd_counting --plot"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=cliargs.out_dir,
        default=Path("runs"),
        help="root holding records/; tables go to OUT/leaderboards",
    )
    p.add_argument(
        "--format",
        choices=catalog.FORMATS,
        default="csv",
        help="printed table format (md/latex also written to a file)",
    )
    p.add_argument("--task", default=None, help="glob on task names")
    p.add_argument("--dataset", default=None, help="glob on dataset names")
    p.add_argument("--ticket", default=None, help="glob on ticket names")
    p.add_argument(
        "--plot",
        action="store_true",
        help="metric vs density, metric vs latency with Pareto front, masks",
    )


def run(args: argparse.Namespace) -> None:
    from bench.leaderboard import leaderboard

    text, paths = leaderboard(
        args.out,
        fmt=args.format,
        task=args.task,
        dataset=args.dataset,
        ticket=args.ticket,
        plot=args.plot,
    )
    print(text)
    for p in paths:
        print(f"wrote {p}", file=sys.stderr)
