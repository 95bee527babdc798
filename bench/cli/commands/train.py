"""`bench train`: retrain a ticket (or a control) from scratch on a classification dataset."""

from __future__ import annotations

import argparse

from bench.cli import args as cliargs
from bench.cli import catalog
from bench.util.errors import BenchError, check_runs

HELP = (
    "Train a ticket from scratch (or a full / none / random control) on a classification "
    "dataset, select on the held-out split, score the selected weights once on the test "
    "split, and write one result record per (ticket, seed). --controls adds the full, "
    "none and random-of-equal-density controls. Under torchrun it trains with DDP."
)
EXAMPLE = """bench train cifar100 resnet164-se --ticket tickets/T.json --controls --seeds 0,1,2
bench train fashion-mnist resnet20-se --mask random:0.5 --epochs 3"""
USAGE = "bench train DATASET MODEL (--ticket T | --mask MASK) [options]"


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """DATASET MODEL and which network: --ticket, or a control by --mask (and --sharing)."""
    p.add_argument(
        "dataset",
        type=cliargs.choice_of(catalog.CLASSIFICATION_DATASETS, "dataset"),
        metavar="DATASET",
        help=f"{' | '.join(catalog.CLASSIFICATION_DATASETS)} (bench list datasets)",
    )
    p.add_argument("model", type=cliargs.model, metavar="MODEL", help="<backbone>-<sam>, e.g. "
                   "resnet164-se (bench list models)")  # fmt: skip
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ticket", metavar="T", help="ticket file (or a name in tickets/)")
    which.add_argument(
        "--mask", type=cliargs.control_mask, help="a control instead: full | none | random:DENSITY"
    )
    cliargs.add_sharing_flag(p, "block", "SAM sharing of a --mask control")


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--heldout",
        type=cliargs.heldout,
        metavar="N|N/class",
        help="held-out split carved from train: a count (5000) or per class (100/class); "
        "default: the protocol's (CIFAR/F-MNIST 5000, ImageNet 100/class)",
    )
    g.add_argument("--split-seed", type=cliargs.seed, default=0, help="seed of the held-out split")
    g.add_argument(
        "--image-size", type=cliargs.positive_int, metavar="N", help="override the input side"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    from bench.engine.hparams import add_train_args

    add_model_flags(p)
    p.add_argument(
        "--controls",
        nargs="?",
        const="full,none,random",
        default=None,
        metavar="LIST",
        help="also train controls: full, none and random (of the ticket's density); "
        "a comma-separated subset picks some, e.g. --controls full,none",
    )
    p.add_argument(
        "--arm",
        choices=ARMS,
        default=None,
        help="train only this arm of the ticket and its --controls (the same run as in the "
        "whole set; a study runs one cell per arm); an arm that is the same network as an "
        "earlier one is that one's run",
    )
    cliargs.add_init_from_flag(p, "start from these weights (a checkpoint; loaded weights_only)")
    cliargs.add_train_limit_flag(p, "train on the first N of a seeded shuffle of the train split")
    cliargs.add_mode_flag(p)
    add_data_flags(p)
    cliargs.add_run_flags(p)
    g = p.add_argument_group("training hyperparameters (each overrides the --preset's field)")
    add_train_args(g, default_preset="auto", skip=("seed", "epochs"))


def check_preset(name: str, flag: str) -> None:
    """A training preset name (or auto), else a BenchError naming the flag."""
    from bench.engine.hparams import AUTO, PRESETS

    if name != AUTO and name not in PRESETS:
        raise BenchError(f"{flag} {name!r}: unknown training preset (known: auto, "
                         f"{', '.join(PRESETS)}; bench list presets)")  # fmt: skip


def data_options(args: argparse.Namespace):
    from bench.runs.classify import DataOptions

    return DataOptions(
        data_root=args.data_root,
        heldout=args.heldout,
        split_seed=args.split_seed,
        image_size=args.image_size,
        train_limit=getattr(args, "train_limit", None),
    )


ARMS = ("ticket", "full", "none", "random")


def check(args: argparse.Namespace):
    """(preset name, hparams) from the flags, and every cheap check, before heavy imports."""
    from bench.engine.hparams import PRESETS, hparams_from_args, preset_for

    if args.iters is not None:
        raise BenchError("bench train counts epochs: use --epochs, not --iters")
    kinds = cliargs.control_kinds(args.controls)
    if args.arm not in (None, "ticket", *kinds):
        raise BenchError(f"--arm {args.arm}: not among the arms (ticket, {', '.join(kinds)})")
    check_preset(args.preset, "--preset")
    preset = preset_for(args.preset, args.dataset)
    base = hparams_from_args(args, PRESETS.get(preset))
    cliargs.check_device(args.device)
    return preset, base


def run(args: argparse.Namespace) -> None:
    preset, base = check(args)
    from bench.cli.commands.ticket import ticket_for
    from bench.engine.device import select_device
    from bench.engine.distributed import destroy_distributed, init_distributed, is_main_process
    from bench.runs.classify import records_table, train_cell, with_seed
    from bench.runs.pretrained import SCRATCH, file_init
    from bench.ticket.schema import control_tickets

    init = SCRATCH if args.init_from is None else file_init(args.init_from)
    data = data_options(args)
    device = select_device(args.device, deterministic=args.deterministic)
    init_distributed(device)
    records, kinds = [], cliargs.control_kinds(args.controls)
    try:
        for seed in args.seeds:
            ticket = ticket_for(args, seed)
            tickets = [ticket, *control_tickets(ticket, seed, kinds)]
            # A control equal to the ticket (e.g. random at density 1) is the same run.
            unique = {t.checksum: t for t in reversed(tickets)}
            if args.arm is not None:
                arm = tickets[["ticket", *kinds].index(args.arm)]
                tickets = [unique[arm.checksum]]
            hp = with_seed(base, seed, args.epochs)
            cell = {"out_root": args.out, "data": data, "device": str(device), "init": init}
            for t in [t for t in tickets if unique.get(t.checksum) is t]:
                records.append(
                    train_cell(t, args.dataset, hp, mode=args.mode, preset=preset, **cell)
                )
        main_rank = is_main_process()
    finally:
        destroy_distributed()
    if main_rank:
        print(records_table(records))
        print(f"records: {args.out / 'records' / 'classification' / args.dataset}")
    check_runs(records)
