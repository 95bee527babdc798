"""`bench study plan|status|run FILE`: a whole grid from one study file (bench.study)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from bench.cli import args as cliargs

HELP = (
    "A paper's whole grid from one TOML study file: plan prints every cell (one exact "
    "`bench ...` command each) with its dependencies, run directories, work in images and "
    "state; status prints the states, read from the run directories alone; run submits "
    "each cell once its dependencies are done, through submitit on this machine or on "
    "SLURM, resubmits killed cells, skips the dependents of a failed one and ends with the "
    "leaderboard. Safe to kill and rerun."
)
EXAMPLE = """bench study plan studies/demo.toml
bench study run studies/demo.toml --launcher local --jobs 2
bench study run studies/ean-r50.toml --launcher slurm --partition gpu --gpus-per-job 1 \
--time 2880 --sbatch=--qos=high
bench study status studies/ean-r50.toml"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("plan", "the cells, their commands, work and states"),
        ("status", "each cell's state"),
        ("run", "run the study"),
    ):
        q = sub.add_parser(name, help=text, description=text)
        q.add_argument("file", type=Path, metavar="FILE", help="a study file (studies/*.toml)")
        q.add_argument("--out", type=cliargs.out_dir, help="root of the runs (default: the file's)")
        if name != "run":
            q.add_argument("--format", choices=("text", "json"), default="text")
        else:
            _add_launcher_flags(q)


def _add_launcher_flags(q: argparse.ArgumentParser) -> None:
    g = q.add_argument_group("launcher (each overrides the file's [launcher])")
    g.add_argument("--launcher", choices=("local", "slurm"), help="submitit executor")
    g.add_argument(
        "--jobs",
        type=cliargs.positive_int,
        metavar="N",
        help="cells at once (default: local 1, slurm every ready cell)",
    )
    g.add_argument("--retries", type=int, metavar="N", help="resubmissions of a killed cell")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--gpus-per-job", type=int, metavar="N", help="GPUs per cell (>1: torchrun)")
    g.add_argument("--cpus-per-job", type=cliargs.positive_int, metavar="N")
    g.add_argument("--time", type=cliargs.positive_int, metavar="MIN", help="job time limit")
    g.add_argument("--mem", help="memory per job, e.g. 64G")
    g.add_argument("--account", help="SLURM account")
    g.add_argument(
        "--sbatch",
        action="append",
        default=None,
        metavar="OPTION",
        help="an extra sbatch option, e.g. --sbatch=--qos=high (repeatable)",
    )


def launcher_of(study, args: argparse.Namespace):
    """The file's [launcher] with the flags given laid over it."""
    from bench.util.errors import BenchError

    given = {
        f.name: getattr(args, f.name if f.name != "name" else "launcher", None)
        for f in dataclasses.fields(study.launcher)
    }
    given = {k: tuple(v) if k == "sbatch" else v for k, v in given.items() if v is not None}
    for line in given.get("sbatch", ()):
        if not line.startswith("--"):
            raise BenchError(f"--sbatch {line!r}: expected an sbatch option like --qos=high")
    return dataclasses.replace(study.launcher, **given)


def run(args: argparse.Namespace) -> None:
    from bench.study.schema import load_study

    study = load_study(args.file, args.out)
    if args.action == "run":
        from bench.study.launch import run_study

        launcher = launcher_of(study, args)  # flags over the file: the plan's cells use them too
        print(run_study(dataclasses.replace(study, launcher=launcher), launcher), end="")
        return
    from bench.study.plan import build_plan
    from bench.study.report import plan_json, plan_text, status_text
    from bench.study.state import plan_states

    plan = build_plan(study)
    states = plan_states(plan)
    if args.format == "json":
        json.dump(plan_json(plan, states), sys.stdout, indent=2)
        print()
    elif args.action == "plan":
        print(plan_text(plan, states))
    else:
        print(status_text(plan, states))
