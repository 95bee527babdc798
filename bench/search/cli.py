"""`bench search` flags and command, for bench/cli.py to mount.

p = _parser(sub, "search", SEARCH_HELP, SEARCH_EXAMPLE)
add_run_flags(p)          # --out --data-root --seeds --device --epochs --iters
add_search_args(p)
p.set_defaults(func=cmd_search)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from bench.cliargs import add_sam_flags, parse_key_values
from bench.engine.hparams import HParams, TrainHParams, add_hparam_args
from bench.engine.rundir import MODES
from bench.errors import BenchError
from bench.search.hparams import SEARCH_PRESETS, SearchHParams, SupernetHParams
from bench.search.strategies import STRATEGIES

__all__ = ["SEARCH_EXAMPLE", "SEARCH_HELP", "add_search_args", "cmd_search"]

SEARCH_HELP = (
    "Search a ticket: train the full-SAM supernet with a random mask per iteration on the "
    "train split minus the held-out split, then let a strategy propose masks scored on the "
    "held-out split with inherited weights; the best becomes a ticket file with provenance."
)
SEARCH_EXAMPLE = "bench search fashion-mnist resnet20-se --save-ticket tickets/my-ticket.json"
SUPERNET_PREFIX = "supernet_"


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """Positional dataset and model, the search choices, and one flag per hparam field."""
    parser.add_argument("dataset", help="cifar10, cifar100, imagenet or fashion-mnist")
    parser.add_argument("model", help="<backbone>-<sam>, e.g. resnet20-se or resnet50-sge")
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES.list(),
        default="reinforce",
        help="reinforce: the official EAN controller; random: uniform masks; greedy: backward "
        "elimination; evolution: regularized evolution (all under the same budget)",
    )
    parser.add_argument(
        "--preset",
        choices=SEARCH_PRESETS.list(),
        default="short",
        help="short: a few minutes on a 2-core CPU; ean: the paper's protocol (40-epoch "
        "ImageNet supernet, 300 controller steps x 3 schemes on the whole held-out split)",
    )
    parser.add_argument(
        "--save-ticket",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the ticket to PATH (e.g. tickets/NAME.json; NAME becomes its name)",
    )
    add_sam_flags(parser)
    parser.add_argument(
        "--heldout",
        default=None,
        help="held-out size, e.g. 5000 or 100/class (default: the dataset's protocol)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="new",
        help="new: skip a finished search, resume an unfinished one; cover: redo the search "
        "(the supernet is reused)",
    )
    short = SEARCH_PRESETS.get("short")("fashion-mnist")
    g = parser.add_argument_group("search hyperparameters (override the preset's)")
    add_hparam_args(g, SearchHParams, shown_defaults=short.search)
    g = parser.add_argument_group("supernet training (override the preset's)")
    add_hparam_args(g, SupernetHParams, prefix=SUPERNET_PREFIX, shown_defaults=short.sampler)
    add_hparam_args(g, TrainHParams, prefix=SUPERNET_PREFIX, shown_defaults=short.supernet)


def _given(args: argparse.Namespace, cls: type[HParams], prefix: str = "") -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, (prefix + f.name).replace("-", "_"), None)
        if value is not None:
            out[f.name] = value
    return out


def cmd_search(args: argparse.Namespace) -> None:
    """Run one search per seed; print each ticket path and its run directory."""
    from bench.search.run import run_search

    seeds = list(getattr(args, "seeds", [0]) or [0])
    if args.save_ticket is not None and len(seeds) > 1:
        raise BenchError("--save-ticket writes one file: give one seed (--seeds S)")
    search = _given(args, SearchHParams)
    # --budget is a SearchHParams field too; run_search also takes it by name.
    budget = search.pop("budget", None)
    for seed in seeds:
        ticket, run_dir = run_search(
            args.dataset,
            args.model,
            strategy=args.strategy,
            preset=args.preset,
            budget=budget,
            seed=seed,
            out_root=getattr(args, "out", Path("runs")),
            data_root=getattr(args, "data_root", None),
            device=getattr(args, "device", "cpu"),
            epochs=getattr(args, "epochs", None),
            iters=getattr(args, "iters", None),
            save_ticket=args.save_ticket,
            mode=args.mode,
            sharing=args.sharing,
            sam_args=parse_key_values(args.sam_arg, "--sam-arg"),
            heldout=args.heldout,
            search_overrides=search,
            supernet_overrides=_given(args, TrainHParams, SUPERNET_PREFIX),
            sampler_overrides=_given(args, SupernetHParams, SUPERNET_PREFIX),
        )
        print(f"ticket {ticket}  (run {run_dir})", file=sys.stdout)
