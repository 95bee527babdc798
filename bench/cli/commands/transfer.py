"""`bench transfer`: a ticket beside its controls in one task (or every task with data).

The command checks every flag and option, plans every arm (the ticket and its controls) and
finds each arm's starting weights (bench.runs.pretrained) before anything trains, then runs each
arm through every task whose data is present (bench.runs.transfer_all) and prints the summary and
the leaderboard.
"""

from __future__ import annotations

import argparse
import logging

from bench.cli import args as cliargs
from bench.cli import catalog
from bench.util.errors import BenchError, check_runs

_log = logging.getLogger(__name__)

HELP = (
    "Plug a ticket into a task (classification, crowd_counting, segmentation, or all whose "
    "data is present) beside its controls, each arm starting from its own pretraining "
    "(--pretrained DATASET: the arm's `bench train` run of the same seed), train and score "
    "it, write one result record per (ticket, task, dataset, seed) - failures kept as "
    "failed records - and print the summary table with the transfer score. Each task's "
    "options (--opt KEY=VALUE): bench list options TASK."
)
EXAMPLE = """bench transfer --ticket T.json --task crowd_counting --dataset shanghaitech-a \
--pretrained cifar100 --data-root /data --seeds 0,1,2
bench transfer --ticket T.json --task segmentation --decoder deeplabv3 --opt crop=512x1024 \
--iters 40000 --pretrained none"""
USAGE = "bench transfer --ticket T --task TASK [options]"
# Flags that are a task's option under another name: (task, option).
OPTION_FLAGS = {
    "decoder": "segmentation",
    "heldout": "classification",
    "train_limit": "classification",
    "preset": "classification",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ticket, the tasks, where the arms start, task options and the output format."""
    tasks = [*catalog.tasks(), "all"]
    p.add_argument(
        "--ticket", required=True, metavar="T", help="ticket file (or a name in tickets/)"
    )
    p.add_argument(
        "--task",
        required=True,
        type=cliargs.choice_of(tasks, "task"),
        metavar="TASK",
        help=" | ".join(tasks),
    )
    p.add_argument("--dataset", help="one of the task's datasets (default: all)")
    _add_option_flags(p)
    _add_start_flags(p)
    p.add_argument(
        "--controls",
        default="full,none",
        metavar="LIST",
        help="control arms beside the ticket: some of full, none, random (equal density)",
    )
    p.add_argument("--no-controls", action="store_true", help="run only the ticket")
    p.add_argument("--format", choices=catalog.FORMATS, default="md", help="table format")
    p.add_argument("--plot", action="store_true", help="also draw the leaderboard plots")
    cliargs.add_mode_flag(p)
    cliargs.add_run_flags(p)


def _add_option_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task options (bench list options TASK)")
    decoders = catalog.decoder_names()
    g.add_argument(
        "--decoder",
        type=cliargs.choice_of(decoders, "decoder"),
        metavar="NAME",
        help=f"segmentation decoder: {' | '.join(decoders)} (default: pspnet)",
    )
    g.add_argument(
        "--heldout", type=cliargs.heldout, metavar="N|N/class",
        help="classification: held-out split size",
    )  # fmt: skip
    cliargs.add_train_limit_flag(g, "classification: train on the first N of a seeded shuffle")
    g.add_argument(
        "--preset", metavar="NAME", help="classification: training preset (default: the dataset's)"
    )
    g.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any task option, e.g. --opt crop_size=256; with --task all: TASK.KEY=VALUE",
    )


def _add_start_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pretrained",
        default="auto",
        type=cliargs.choice_of(["auto", "none", *catalog.CLASSIFICATION_DATASETS], "dataset"),
        metavar="DATASET",
        help="each arm starts from its own `bench train` run on DATASET (same seed), e.g. "
        "imagenet, cifar100, fashion-mnist; none: from scratch; auto: the dataset the ticket "
        "was searched on (ImageNet for ImageNet backbones)",
    )
    p.add_argument(
        "--pretrained-preset",
        default="auto",
        metavar="NAME",
        help="the training preset of those runs (auto: the dataset's paper protocol)",
    )
    cliargs.add_init_from_flag(
        p,
        "one external checkpoint instead (e.g. torchvision ResNet weights); only for a "
        "single arm (--no-controls)",
    )


def transfer_options(args: argparse.Namespace) -> dict[str, dict]:
    """{task: typed options} from --opt and the option flags (bench.runs.task_options)."""
    from bench.runs.task_options import task_names, task_options

    given: dict[str, dict[str, str]] = {}
    for key, text in cliargs.split_key_values(args.opt, "--opt").items():
        task, _, name = key.rpartition(".")
        if not task and args.task == "all":
            raise BenchError(f"--opt {key}: with --task all, name the task: TASK.{key}=...")
        if task and task not in task_names():
            known = ", ".join(task_names())
            raise BenchError(f"--opt {key}: unknown task {task!r} (known: {known})")
        given.setdefault(task or args.task, {})[name] = text
    options = {t: task_options(t).parse(opts, "--opt") for t, opts in given.items()}
    for key, task in OPTION_FLAGS.items():
        if (value := getattr(args, key, None)) is not None:
            flag = "--" + key.replace("_", "-")
            options.setdefault(task, {}).update(task_options(task).parse({key: value}, flag))
    return options


def check(args: argparse.Namespace) -> dict[str, dict]:
    """Every cheap check of the flags (before any heavy import); the typed task options."""
    from bench.cli.commands.train import check_preset

    if args.task == "all" and args.dataset:
        raise BenchError("--dataset picks one dataset of one task; drop it with --task all")
    if args.dataset and args.dataset not in catalog.tasks()[args.task]:
        known = ", ".join(catalog.tasks()[args.task])
        raise BenchError(f"--dataset {args.dataset!r}: {args.task} knows {known}")
    check_preset(args.pretrained_preset, "--pretrained-preset")
    if not args.no_controls:
        cliargs.control_kinds(args.controls)
    options = transfer_options(args)
    cliargs.check_device(args.device)
    return options


def _transfer_tasks(args: argparse.Namespace):
    """The registry of tasks this transfer runs (one task narrowed to --dataset, or all)."""
    from bench.runs.transfer import TASKS
    from bench.util.registry import Registry

    if args.task == "all":
        return TASKS
    cls = TASKS.get(args.task)
    if args.dataset:
        cls = type(cls.__name__, (cls,), {"datasets": (args.dataset,)})
    tasks = Registry("task")
    tasks.register(args.task)(cls)
    for flag, unit in (("epochs", "iters"), ("iters", "epochs")):
        if getattr(args, flag) is not None and cls.budget_unit == unit:
            raise BenchError(f"{args.task} counts its training in {unit}: use --{unit}")
    return tasks


def _pretrained_source(args: argparse.Namespace, ticket) -> str:
    """--pretrained auto: the dataset the ticket was searched on, ImageNet for ImageNet
    backbones; otherwise the user must say."""
    from bench.models.backbones import BACKBONES

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


def _transfer_inits(args: argparse.Namespace, arms: list) -> tuple[dict, str]:
    """{(checksum, seed): Init} of every arm, and the source they come from."""
    from bench.engine.hparams import preset_for
    from bench.runs.pretrained import arm_inits, file_init, train_command

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
    preset = preset_for(args.pretrained_preset, source)
    kinds = list(dict.fromkeys(a for a, _, _ in arms if a != "ticket"))

    def remedy() -> str:
        extra = {"preset": preset, "out": args.out, "data_root": args.data_root}
        return train_command(source, args.ticket, ticket.model_name, kinds, args.seeds, **extra)

    inits = arm_inits(arms, pretrained=source, preset=preset, out_root=args.out, remedy=remedy)
    return inits, source


def run(args: argparse.Namespace) -> None:
    options = check(args)
    from dataclasses import replace

    from bench.engine.device import select_device
    from bench.runs.transfer import load_adapters
    from bench.runs.transfer_all import RunOptions, report, transfer_all
    from bench.ticket.schema import load_ticket, transfer_arms

    device = str(select_device(args.device, deterministic=args.deterministic))
    load_adapters()
    ticket = load_ticket(cliargs.ticket_file(args.ticket))
    tasks = _transfer_tasks(args)
    kinds = [] if args.no_controls else cliargs.control_kinds(args.controls)
    if args.task != "all":  # the one thing asked for cannot run: say so before anything else
        task = tasks.get(args.task)()
        reasons = [task.missing(d, args.data_root) for d in task.datasets]
        if all(reasons):
            raise BenchError(str(reasons[0]))
    arms = transfer_arms(ticket, kinds, args.seeds)
    inits, source = _transfer_inits(args, arms)  # every arm's weights found before any trains
    pretrained = None if source in ("none", "file") else source
    opts = replace(
        RunOptions.from_args(args), device=device, options=options, inits=inits,
        pretrained=pretrained,
    )  # fmt: skip
    records, skipped = [], []
    for arm, t, seeds in arms:
        _log.info(f"== {arm}: {t.name}")
        recs, skipped = transfer_all(t, replace(opts, seeds=seeds), tasks, progress=_log.info)
        if args.task != "all" and not recs:  # the one thing asked for cannot run
            raise BenchError(skipped[0][2] if skipped else f"{args.task}: nothing to run")
        records += recs
    text, paths = report(records, skipped, args.out, fmt=args.format, plot=args.plot)
    print(text)
    for p in paths:
        _log.info(f"wrote {p}")
    check_runs(records)
