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
from typing import TYPE_CHECKING, Any

from bench.cliargs import add_sam_flags, parse_key_values
from bench.engine.hparams import HParams, TrainHParams, add_hparam_args
from bench.engine.rundir import MODES
from bench.errors import BenchError
from bench.search.hparams import SEARCH_PRESETS, SearchHParams, SupernetHParams
from bench.search.strategies import STRATEGIES

if TYPE_CHECKING:
    from bench.search.run import SearchSetup

__all__ = ["SEARCH_EXAMPLE", "SEARCH_HELP", "add_search_args", "cmd_search", "resolve_args"]

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
        help="short: a few minutes on a 2-core CPU (per-block SAMs unless --sharing stage, "
        "seed 0); ean: the paper's protocol (40-epoch ImageNet supernet, 300 controller steps x "
        "3 schemes on the whole held-out split) in the official search space: one SAM shared "
        "per stage, DIA reduction 20, SGE 64 groups, SE reduction 16 (hidden exactly C//16), "
        "seed 666 unless --seeds is given; --sharing block or a contradicting --sam-arg is "
        "refused; other SAMs (no official module) are shared per stage with their own defaults",
    )
    parser.add_argument(
        "--save-ticket",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the ticket to PATH (e.g. tickets/NAME.json; NAME becomes its name)",
    )
    add_sam_flags(parser)
    # --sharing and --seeds (bench/cliargs.py; bench/cli.py's add_run_flags, added before this
    # function) default to block and [0]; a search must tell "not given" from those values,
    # as the preset decides then (ean: stage, 666). set_defaults retargets flags already added.
    parser.set_defaults(sharing=None, seeds=None)
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


def _resolve_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments `resolve_search` and `run_search` share, from the flags (seed aside)."""
    search = _given(args, SearchHParams)
    # --budget is a SearchHParams field too; run_search also takes it by name.
    budget = search.pop("budget", None)
    return {
        "preset": args.preset,
        "budget": budget,
        "epochs": getattr(args, "epochs", None),
        "iters": getattr(args, "iters", None),
        "sharing": getattr(args, "sharing", None),  # None: the preset's
        "sam_args": parse_key_values(getattr(args, "sam_arg", []), "--sam-arg"),
        "search_overrides": search,
        "supernet_overrides": _given(args, TrainHParams, SUPERNET_PREFIX),
        "sampler_overrides": _given(args, SupernetHParams, SUPERNET_PREFIX),
    }


def resolve_args(args: argparse.Namespace) -> list[SearchSetup]:
    """The searches the flags ask for, one per seed, resolved without data or training.

    No --seeds: the preset's seed (short 0, ean 666). A flag the preset's search space
    refuses (e.g. --sharing block under --preset ean) is a one-line BenchError.
    """
    from bench.search.run import resolve_search

    seeds = getattr(args, "seeds", None) or [None]
    kwargs = _resolve_kwargs(args)
    return [resolve_search(args.dataset, args.model, seed=s, **kwargs) for s in seeds]


def cmd_search(args: argparse.Namespace) -> None:
    """Run one search per seed; print each ticket path and its run directory."""
    from bench.search.run import run_search

    setups = resolve_args(args)  # bad flags fail here, before any data or training
    if args.save_ticket is not None and len(setups) > 1:
        raise BenchError("--save-ticket writes one file: give one seed (--seeds S)")
    for setup in setups:
        ticket, run_dir = run_search(
            args.dataset,
            args.model,
            strategy=args.strategy,
            seed=setup.seed,
            out_root=getattr(args, "out", Path("runs")),
            data_root=getattr(args, "data_root", None),
            device=getattr(args, "device", "cpu"),
            save_ticket=args.save_ticket,
            mode=args.mode,
            heldout=args.heldout,
            **_resolve_kwargs(args),
        )
        print(f"ticket {ticket}  (run {run_dir})", file=sys.stdout)
