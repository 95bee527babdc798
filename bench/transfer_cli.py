"""`bench transfer` flags and command, for bench/cli.py to mount.

The command plans every arm (the ticket and its controls) and finds each arm's starting
weights (bench.pretrained) before anything trains, then runs each arm through every task
whose data is present (bench.transfer_all) and prints the summary and the leaderboard.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cliargs import control_kinds, parse_key_values, resolve_ticket_paths
from bench.errors import BenchError, RunsFailed

__all__ = ["TRANSFER_EXAMPLE", "TRANSFER_HELP", "add_transfer_args", "cmd_transfer"]

TRANSFER_HELP = (
    "Plug a ticket into a task (classification, crowd_counting, segmentation, or all whose "
    "data is present) beside its controls, each arm starting from its own pretraining "
    "(--pretrained DATASET: the arm's `bench train` run of the same seed), train and score "
    "it, write one result record per (ticket, task, dataset, seed) - failures kept as "
    "failed records - and print the summary table with the transfer score."
)
TRANSFER_EXAMPLE = (
    "bench transfer --ticket T.json --task crowd_counting --dataset shanghaitech-a "
    "--pretrained cifar100 --data-root /data --seeds 0,1,2"
)


def add_transfer_args(parser: argparse.ArgumentParser) -> None:
    """The ticket, the tasks, where the arms start, task options and the output format."""
    from bench.engine.rundir import add_mode_arg

    parser.add_argument("--ticket", required=True, help="ticket file (or a name in tickets/)")
    parser.add_argument("--task", required=True, help="a registered task, or all")
    parser.add_argument("--dataset", default=None, help="one of the task's datasets (default: all)")
    parser.add_argument(
        "--decoder",
        default=None,
        help="segmentation decoder: fcn | pspnet | deeplabv3 | deeplabv3plus | upernet",
    )
    parser.add_argument("--heldout", default=None, help="classification: held-out split size")
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="classification: train on the first N of a seeded shuffle",
    )
    parser.add_argument("--preset", default=None, help="classification: training preset")
    parser.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other task option, e.g. --opt crop=256",
    )
    parser.add_argument(
        "--pretrained",
        default="auto",
        metavar="DATASET",
        help="each arm starts from its own `bench train` run on DATASET (same seed), e.g. "
        "imagenet, cifar100, fashion-mnist; none: from scratch; auto: the dataset the ticket "
        "was searched on (ImageNet for ImageNet backbones)",
    )
    parser.add_argument(
        "--pretrained-preset",
        default="auto",
        help="the training preset of those runs (auto: the dataset's paper protocol)",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="one external checkpoint instead (e.g. torchvision ResNet weights); only for a "
        "single arm (--no-controls)",
    )
    parser.add_argument(
        "--controls",
        default="full,none",
        metavar="LIST",
        help="control arms beside the ticket: some of full, none, random (equal density)",
    )
    parser.add_argument(
        "--no-controls",
        action="store_true",
        help="run only the ticket, not its controls",
    )
    parser.add_argument("--format", choices=["md", "csv", "latex"], default="md")
    parser.add_argument("--plot", action="store_true", help="also draw the leaderboard plots")
    add_mode_arg(parser)


def _transfer_tasks(args: argparse.Namespace):
    """The registry of tasks this transfer runs (one task narrowed to --dataset, or all)."""
    from bench.registry import Registry
    from bench.transfer import TASKS

    if args.task == "all":
        if args.dataset:
            raise BenchError("--dataset picks one dataset of one task; drop it with --task all")
        return TASKS
    cls = TASKS.get(args.task)
    if args.dataset:
        if args.dataset not in cls.datasets:
            raise BenchError(
                f"--dataset {args.dataset!r}: {args.task} knows {', '.join(cls.datasets)}"
            )
        cls = type(cls.__name__, (cls,), {"datasets": (args.dataset,)})
    tasks = Registry("task")
    tasks.register(args.task)(cls)
    for flag, unit in (("epochs", "iters"), ("iters", "epochs")):
        if getattr(args, flag) is not None and cls.budget_unit == unit:
            raise BenchError(f"{args.task} counts its training in {unit}: use --{unit}")
    return tasks


def _transfer_options(args: argparse.Namespace) -> dict[str, dict]:
    options: dict[str, dict] = {}
    for key, value in parse_key_values(args.opt, "--opt").items():
        task, _, field = key.rpartition(".")
        if not task and args.task == "all":
            raise BenchError(f"--opt {key}: with --task all, name the task: TASK.{key}=...")
        options.setdefault(task or args.task, {})[field] = value
    for task, key in (
        ("segmentation", "decoder"),
        ("classification", "heldout"),
        ("classification", "train_limit"),
        ("classification", "preset"),
    ):
        if getattr(args, key, None) is not None:
            options.setdefault(task, {})[key] = getattr(args, key)
    return options


def _pretrained_source(args: argparse.Namespace, ticket) -> str:
    """--pretrained auto: the dataset the ticket was searched on, ImageNet for ImageNet
    backbones; otherwise the user must say."""
    from bench.models.resnet import BACKBONES

    if args.init_from is not None:
        if args.pretrained != "auto":
            raise BenchError("--init-from and --pretrained both say where weights come from")
        return "file"
    if args.pretrained != "auto":
        return args.pretrained
    if ticket.provenance.get("kind") == "searched":
        return ticket.provenance["dataset"]
    if BACKBONES.get(ticket.backbone).stem == "imagenet":
        return "imagenet"
    raise BenchError(
        f"{args.ticket}: say where the arms start: --pretrained DATASET (their `bench train` "
        "runs) or --pretrained none (from scratch)"
    )


def _status(msg: str) -> None:
    print(msg, file=sys.stderr)


def _transfer_inits(args: argparse.Namespace, arms: list) -> tuple[dict, str]:
    """{(checksum, seed): Init} of every arm, and the source they come from."""
    from bench.classify import DEFAULT_PRESET
    from bench.pretrained import arm_inits, file_init, train_command

    ticket = arms[0][1]
    source = _pretrained_source(args, ticket)
    if source == "file":
        if len({t.checksum for _, t, _ in arms}) > 1:
            raise BenchError(
                f"--init-from {args.init_from}: one file would start arms with different masks "
                f"({', '.join(a for a, _, _ in arms)}); use --pretrained, or --no-controls"
            )
        init = file_init(args.init_from)
        return {(t.checksum, s): init for _, t, ss in arms for s in ss}, source
    preset = args.pretrained_preset
    if preset == "auto":
        preset = DEFAULT_PRESET.get(source, "short")
    kinds = list(dict.fromkeys(a for a, _, _ in arms if a != "ticket"))

    def remedy() -> str:
        extra = {"preset": preset, "out": args.out, "data_root": args.data_root}
        return train_command(source, args.ticket, ticket.model_name, kinds, args.seeds, **extra)

    inits = arm_inits(arms, pretrained=source, preset=preset, out_root=args.out, remedy=remedy)
    return inits, source


def cmd_transfer(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from bench.tickets import load_ticket, transfer_arms
    from bench.transfer import load_adapters
    from bench.transfer_all import RunOptions, report, transfer_all

    load_adapters()
    ticket = load_ticket(resolve_ticket_paths([args.ticket])[0])
    tasks = _transfer_tasks(args)
    options = _transfer_options(args)
    kinds = [] if args.no_controls else control_kinds(args.controls)
    if args.task != "all":  # the one thing asked for cannot run: say so before anything else
        task = tasks.get(args.task)()
        reasons = [task.missing(d, args.data_root) for d in task.datasets]
        if all(reasons):
            raise BenchError(str(reasons[0]))
    arms = transfer_arms(ticket, kinds, args.seeds)
    inits, source = _transfer_inits(args, arms)  # every arm's weights found before any trains
    opts = replace(
        RunOptions.from_args(args),
        options=options,
        inits=inits,
        pretrained=None if source in ("none", "file") else source,
    )
    records, skipped = [], []
    for arm, t, seeds in arms:
        print(f"== {arm}: {t.name}", file=sys.stderr)
        recs, skipped = transfer_all(t, replace(opts, seeds=seeds), tasks, progress=_status)
        if args.task != "all" and not recs:  # the one thing asked for cannot run
            raise BenchError(skipped[0][2] if skipped else f"{args.task}: nothing to run")
        records += recs
    text, paths = report(records, skipped, args.out, fmt=args.format, plot=args.plot)
    print(text)
    for p in paths:
        print(f"wrote {p}", file=sys.stderr)
    failed = [r for r in records if r["provenance"]["status"] != "finished"]
    if failed:  # kept as failed records, and scripts must be able to tell
        raise RunsFailed(f"{len(failed)} of {len(records)} runs failed (their records say why)")
