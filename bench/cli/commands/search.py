"""`bench search`: its flags and its command (one module per command, see bench.cli.commands).

Flags: DATASET MODEL, the strategy and preset, the SAM's sharing and options, and one flag
per field of the preset's three records (bench.search.hparams); `--preset auto` picks the
dataset's protocol. Every flag is checked against the preset (`resolve_args`) before any
data is read or anything trains.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cli import args as cliargs
from bench.cli import catalog
from bench.util.errors import BenchError

if TYPE_CHECKING:
    from bench.engine.hparams import HParams
    from bench.search.config import SearchConfig, SearchSetup

__all__ = [
    "EXAMPLE",
    "HELP",
    "add_arguments",
    "add_search_args",
    "cmd_search",
    "resolve_args",
    "run",
    "search_configs",
]

HELP = (
    "Search a ticket: train the full-SAM supernet with a random mask per iteration on the "
    "train split minus the held-out split, then let a strategy propose masks scored on the "
    "held-out split with inherited weights; the best becomes a ticket file with provenance."
)
EXAMPLE = """bench search fashion-mnist resnet20-se --save-ticket tickets/my-ticket.json
bench search imagenet resnet50-sge --data-root /data     # --preset auto: ean on ImageNet"""
USAGE = "bench search DATASET MODEL [options]"
SUPERNET_PREFIX = "supernet_"
PRESET_HELP = (
    "auto: the dataset's protocol (ean on ImageNet and CIFAR, short otherwise); short: "
    "minutes on a 2-core CPU; ean: the paper's protocol in the official search space (one "
    "SAM shared per stage with the official SAM options, seed 666; a flag that contradicts "
    "it is refused); bench list presets shows each"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Everything `bench search` takes: the run flags, then the search's own."""
    cliargs.add_run_flags(
        p,
        seeds_default=None,
        seeds_help="comma-separated search seeds (default: the preset's: short 0, ean 666)",
        epochs_help="the supernet's epochs (a step schedule scales along)",
        iters_help="the reinforce controller's steps",
    )
    add_search_args(p)


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """Positional dataset and model, the search choices, and one flag per hparam field."""
    from bench.engine.hparams import TrainHParams, add_hparam_args
    from bench.search.hparams import AUTO, SEARCH_PRESETS, SearchHParams, SupernetHParams

    datasets = catalog.CLASSIFICATION_DATASETS
    parser.add_argument(
        "dataset", type=cliargs.choice_of(datasets, "dataset"), metavar="DATASET",
        help=" | ".join(datasets),
    )  # fmt: skip
    parser.add_argument(
        "model", type=cliargs.model, metavar="MODEL", help="<backbone>-<sam>, e.g. resnet20-se"
    )
    parser.add_argument(
        "--strategy",
        type=cliargs.choice_of(catalog.STRATEGIES, "strategy"),
        default="reinforce",
        metavar="{" + ",".join(catalog.STRATEGIES) + "}",
        help="reinforce: the official EAN controller; random: uniform masks; greedy: backward "
        "elimination; evolution: regularized evolution (all under the same budget)",
    )
    presets = [AUTO, *SEARCH_PRESETS]
    parser.add_argument("--preset", choices=presets, default=AUTO, help=PRESET_HELP)
    parser.add_argument(
        "--save-ticket",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the ticket to PATH (e.g. tickets/NAME.json; NAME becomes its name)",
    )
    # None: the preset decides (ean: stage, its official SAM options).
    cliargs.add_sam_flags(
        parser, sharing_default=None, sharing_help="one SAM per block or one shared per stage "
        "(default: the preset's: short block, ean stage)",
    )  # fmt: skip
    parser.add_argument(
        "--heldout", type=cliargs.heldout, metavar="N|N/class",
        help="held-out size, e.g. 5000 or 100/class (default: the dataset's protocol)",
    )  # fmt: skip
    cliargs.add_mode_flag(
        parser, "new: skip a finished search, resume an unfinished one; cover: redo the "
        "search (the supernet is reused)",
    )  # fmt: skip
    g = parser.add_argument_group("search hyperparameters (each overrides the preset's field)")
    add_hparam_args(g, SearchHParams, show_defaults=False)
    g = parser.add_argument_group("supernet training (each overrides the preset's field)")
    for cls in (SupernetHParams, TrainHParams):
        add_hparam_args(g, cls, prefix=SUPERNET_PREFIX, show_defaults=False)


def _given(args: argparse.Namespace, cls: type[HParams], prefix: str = "") -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, (prefix + f.name).replace("-", "_"), None)
        if value is not None:
            out[f.name] = value
    return out


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The SearchConfig fields the preset resolves, from the flags (seed aside)."""
    from bench.engine.hparams import TrainHParams
    from bench.search.hparams import SearchHParams, SupernetHParams, preset_for

    search = _given(args, SearchHParams)
    return {
        "preset": preset_for(args.preset, args.dataset),
        "budget": search.pop("budget", None),  # --budget: a SearchHParams field, by name
        "epochs": getattr(args, "epochs", None),
        "iters": getattr(args, "iters", None),
        "sharing": getattr(args, "sharing", None),  # None: the preset's
        "sam_args": cliargs.parse_key_values(getattr(args, "sam_arg", []), "--sam-arg"),
        "search_overrides": search,
        "supernet_overrides": _given(args, TrainHParams, SUPERNET_PREFIX),
        "sampler_overrides": _given(args, SupernetHParams, SUPERNET_PREFIX),
    }


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Every flag against the preset and its search space, without heavy imports; the
    settings they give."""
    from bench.search.hparams import resolve_preset

    s = _settings(args)
    overrides = {k: s[k] for k in ("epochs", "iters", "budget")}
    preset = resolve_preset(
        s["preset"],
        args.dataset,
        search=s["search_overrides"],
        supernet=s["supernet_overrides"],
        sampler=s["sampler_overrides"],
        **overrides,
    )
    _, sam = catalog.check_model(args.model)
    preset.space.resolve(preset.name, sam, s["sharing"], s["sam_args"])
    if args.save_ticket is not None:
        if args.save_ticket.suffix != ".json":
            raise BenchError(f"--save-ticket {args.save_ticket}: expected a .json path")
        if args.seeds is not None and len(args.seeds) > 1:
            raise BenchError("--save-ticket writes one file: give one seed (--seeds S)")
    cliargs.check_device(getattr(args, "device", "auto"))
    return s


def search_configs(args: argparse.Namespace) -> list[SearchConfig]:
    """One SearchConfig per seed (no --seeds: the preset's), checked as `check` does."""
    from bench.search.config import SearchConfig

    config = SearchConfig(
        args.dataset,
        args.model,
        strategy=args.strategy,
        data_root=getattr(args, "data_root", None),
        heldout=args.heldout,
        out_root=getattr(args, "out", Path("runs")),
        device=getattr(args, "device", "auto"),
        deterministic=getattr(args, "deterministic", False),
        mode=args.mode,
        save_ticket=args.save_ticket,
        **check(args),
    )
    return [config.replace(seed=s) for s in getattr(args, "seeds", None) or [None]]


def resolve_args(args: argparse.Namespace) -> list[SearchSetup]:
    """The searches the flags ask for, one per seed, resolved without data or training.

    No --seeds: the preset's seed (short 0, ean 666). A flag the preset's search space
    refuses (e.g. --sharing block under --preset ean) is a one-line BenchError.
    """
    return [config.resolve() for config in search_configs(args)]


def run(args: argparse.Namespace) -> None:
    """Run one search per seed; print each ticket path and its run directory."""
    configs = search_configs(args)  # bad flags fail here, before any heavy import or data
    from bench.search.run import run_search

    for config in configs:
        ticket, run_dir = run_search(config)
        print(f"ticket {ticket}  (run {run_dir})", file=sys.stdout)


cmd_search = run  # the name tests and older callers use
