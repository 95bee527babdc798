"""`bench leaderboard`: result records -> leaderboards, a summary, a printed table, plots."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from bench.cli import args as cliargs
from bench.cli import catalog

_log = logging.getLogger(__name__)

HELP = (
    "Collect result records (from one or several output roots) into "
    "leaderboards/<task>.csv (one row per run, failures kept), summary.csv (mean, std, n "
    "over seeds; paired differences to the full and none controls with 95% t-intervals; "
    "verdicts on accuracy kept, parameters, FLOPs and latency; cost saved vs full) and "
    "ranks.csv (per ticket across tasks), print a table, optionally plot."
)
EXAMPLE = (
    "bench leaderboard --out runs --format md --task crowd_counting --plot\n"
    "bench leaderboard --out runs --records-from cluster_b/runs --tolerance 0.5"
)


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
    p.add_argument(
        "--records-from",
        action="append",
        type=cliargs.existing_dir,
        default=[],
        metavar="ROOT",
        help="also read ROOT/records (repeatable: a grid split over clusters); a run with "
        "two different records is refused",
    )
    p.add_argument(
        "--tolerance",
        type=cliargs.percent,
        default=1.0,
        metavar="PCT",
        help="accuracy 'keeps' while the interval vs full ends at or above -PCT%% "
        "(default 1; stated in the caption)",
    )
    p.add_argument("--task", default=None, help="glob on task names")
    p.add_argument("--dataset", default=None, help="glob on dataset names")
    p.add_argument("--ticket", default=None, help="glob on ticket names")
    p.add_argument(
        "--plot",
        action="store_true",
        help="forest plot vs full, metric vs density, metric vs latency with Pareto front, masks",
    )


def run(args: argparse.Namespace) -> None:
    from bench.report.leaderboard import leaderboard

    text, paths = leaderboard(
        args.out,
        more_roots=args.records_from,
        fmt=args.format,
        task=args.task,
        dataset=args.dataset,
        ticket=args.ticket,
        tolerance_pct=args.tolerance,
        plot=args.plot,
    )
    print(text)
    for p in paths:
        _log.info(f"wrote {p}")
