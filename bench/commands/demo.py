"""`bench demo`: the whole flow on the embedded default (bench.demo does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import cliargs

HELP = (
    "The whole flow on the embedded default (real Fashion-MNIST, a few minutes on 2 "
    "cores): search a resnet20-se ticket, retrain it beside its full and none controls, "
    "transfer it to every task with embedded sample data, print the summary and plots."
)
EXAMPLE = "bench demo --out runs/demo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=cliargs.out_dir, default=Path("runs/demo"), help="where everything goes"
    )
    # cpu by default: the demo's numbers (README) are the CPU's, bit-exact there.
    p.add_argument("--device", type=cliargs.device, default="cpu", help=cliargs.DEVICE_HELP)
    p.add_argument("--seed", type=cliargs.seed, default=0, help="seed of the search and the runs")


def run(args: argparse.Namespace) -> None:
    cliargs.check_device(args.device)
    from bench.demo import run_demo

    print(run_demo(args.out, device=args.device, seed=args.seed))
