"""`bench runs check OUT`: what each run directory holds, and repairing damaged ones."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from bench.util.errors import BenchError, RunsFailed

HELP = (
    "Tell in one line per run directory under OUT what it holds: finished, resumable (at "
    "which step), failed (its reason), running (the lock's holder), stale-lock (a killed "
    "holder), damaged (which file, what is wrong), or new; then a summary. Exits 1 if any "
    "is damaged. --repair does only what is safe and says each thing: a lost result.json "
    "or record is restored from the other, or re-scored from the final checkpoint; a "
    "damaged latest.pt falls back to previous.pt when that is proven of the same run; "
    "stale locks are removed; damaged files are moved to damaged/ inside the run, never "
    "deleted."
)
EXAMPLE = """bench runs check runs
bench runs check runs --repair
bench runs check runs/demo --format json"""
USAGE = "bench runs check OUT [--repair] [--format {text,json}] [--device DEVICE]"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("check",), help="check: tell (and --repair) run states")
    p.add_argument("out", type=Path, metavar="OUT", help="an out root holding run directories")
    p.add_argument(
        "--repair", action="store_true", help="repair what is safe to, and say each thing done"
    )
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    p.add_argument("--device", default="cpu", help="where --repair re-scores a run")


def run(args: argparse.Namespace) -> None:
    from bench.cli import args as cliargs

    out: Path = args.out
    if not out.is_dir():
        raise BenchError(f"{out}: no such directory; expected an out root holding run directories")
    cliargs.check_device(args.device)
    from bench.engine.state import RecordIndex, read_state, run_dirs
    from bench.runs.repair import repair_run

    index, repairs = RecordIndex(out), {}
    text = args.format == "text"
    states = []
    for path in run_dirs(out):
        if args.repair:
            done: list[str] = []
            say = (lambda msg, p=path: print(f"  repair {p.name}: {msg}")) if text else done.append
            states.append(repair_run(path, index, device=args.device, say=say))
            repairs[path.name] = done
        else:
            states.append(read_state(path, records=index))
    claimed = {d.file for s in states for d in s.damage}
    strays = [d for d in RecordIndex(out).unreadable if d.file not in claimed]
    counts = Counter(s.state for s in states)
    summary = f"{len(states)} run directories: " + (
        ", ".join(f"{n} {k}" for k, n in counts.most_common()) or "none"
    )
    if strays:
        summary += f"; {len(strays)} damaged records of no run"
    if text:
        for s in states:
            print(s.line())
        for d in strays:
            print(f"{'damaged':<10} {d}")
        print(summary)
    else:
        runs = [{**s.as_dict(), "repairs": repairs.get(s.path.name, [])} for s in states]
        records = [{"file": str(d.file), "what": d.what} for d in strays]
        print(json.dumps({"out": str(out), "runs": runs, "damaged_records": records,
                          "summary": dict(counts)}, indent=2))  # fmt: skip
    damaged = counts["damaged"] + len(strays)
    if damaged:
        hint = "" if args.repair else f"; see what can be repaired: bench runs check {out} --repair"
        raise RunsFailed(f"{damaged} damaged{hint}")
