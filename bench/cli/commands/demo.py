"""`bench demo`: the whole flow on the embedded default, as the study studies/demo.toml."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from bench.cli import args as cliargs

HELP = (
    "The whole flow on the embedded default (real Fashion-MNIST, a few minutes on 2 "
    "cores): search a resnet20-se ticket, retrain it beside its full and none controls, "
    "transfer it to every task with embedded sample data, print the leaderboard and plots. "
    "It runs the study studies/demo.toml one cell after another (bench study run it with "
    "--jobs N for more at once)."
)
EXAMPLE = "bench demo --out runs/demo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=cliargs.out_dir, default=Path("runs/demo"), help="where everything goes"
    )
    # cpu by default: the demo's numbers (README) are the CPU's, bit-exact there.
    p.add_argument("--device", type=cliargs.device, default="cpu", help=cliargs.DEVICE_HELP)
    p.add_argument("--seed", type=cliargs.seed, default=0, help="seed of the search and the runs")
    p.add_argument(
        "--data-only",
        action="store_true",
        help="only write the embedded sample data into OUT/data (the study's first cell)",
    )


def demo_study(out: Path, *, device: str = "cpu", seed: int = 0):
    """studies/demo.toml under `out`, its seeds (and the search's) shifted by `seed`."""
    from bench.study.schema import load_study
    from bench.study.tickets import STUDY_DIR

    study = load_study(STUDY_DIR / "demo.toml", out)
    search = study.search
    assert search is not None
    ticket = search.ticket.replace(f"-s{search.seed}.json", f"-s{search.seed + seed}.json")
    search = dataclasses.replace(search, seed=(search.seed or 0) + seed, ticket=ticket)
    seeds = tuple(s + seed for s in study.seeds)
    return dataclasses.replace(study, search=search, seeds=seeds, device=device)


def run(args: argparse.Namespace) -> None:
    cliargs.check_device(args.device)
    if args.data_only:
        from bench.study.demo import prepare_data

        print(prepare_data(args.out / "data"))
        return
    from bench.study.launch import run_study

    t0 = time.perf_counter()
    study = demo_study(args.out, device=args.device, seed=args.seed)
    print(run_study(study, study.launcher), end="")
    minutes, secs = divmod(round(time.perf_counter() - t0), 60)
    print(f"\ndemo wall time: {minutes} min {secs:02d} s")
