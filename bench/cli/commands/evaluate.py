"""`bench eval`: score a checkpoint of a ticket network on the held-out or test split."""

from __future__ import annotations

import argparse

from bench.cli import args as cliargs
from bench.cli.commands.train import add_data_flags, add_model_flags, data_options

HELP = (
    "Score a checkpoint of a ticket network on the held-out or test split and write "
    "a result record."
)
EXAMPLE = "bench eval cifar10 resnet20-se --ticket T.json runs/train_x/best.pt --split test"
USAGE = "bench eval DATASET MODEL (--ticket T | --mask MASK) CHECKPOINT [options]"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_flags(p)
    p.add_argument(
        "checkpoint", type=cliargs.existing_file, help="best.pt / latest.pt or a state dict"
    )
    p.add_argument("--split", default="test", choices=["heldout", "test"])
    add_data_flags(p)
    cliargs.add_run_flags(p)


def run(args: argparse.Namespace) -> None:
    cliargs.check_device(args.device)
    from bench.cli.commands.ticket import ticket_for
    from bench.engine import TrainHParams, select_device
    from bench.runs.classify import ClassificationCell, eval_checkpoint
    from bench.runs.pretrained import check_ticket

    select_device(args.device, deterministic=args.deterministic)
    seed = args.seeds[0]
    ticket = ticket_for(args, seed)
    check_ticket(args.checkpoint, ticket)  # the file first: cheaper than reading the dataset
    cell = ClassificationCell(ticket, args.dataset, TrainHParams(seed=seed), data_options(args))
    rec = eval_checkpoint(cell, args.checkpoint, args.split, out_root=args.out, device=args.device)
    x = rec["result"]["extras"]
    top5 = "" if x["top5"] is None else f"  top5 {x['top5']:.2f}"
    print(
        f"{args.checkpoint} on {args.dataset}/{args.split}: top1 {rec['result']['value']:.2f}"
        f"{top5}  loss {x['loss']:.4f}  (n={x['n']})"
    )
