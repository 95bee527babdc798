"""A benchmark run spread over several processes, run one after another, their rounds pooled.

Two runs of the same benchmark in two processes can differ by more than the round-to-round
spread inside either: memory layout, one-off library choices (oneDNN kernels, allocator
state) and the machine's state minutes apart are fixed within a process. `python -m
benchmarks` therefore runs its rounds in `--processes` child processes (default 4; a quick
run 1) and pools every child's per-round values, so the printed spread holds what differs
between runs, and a second run can be judged against it (`python -m benchmarks compare`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.util.errors import BenchError
from bench.util.io import read_json
from benchmarks.harness import Comparison, Session

__all__ = ["child_argv", "pool_sessions", "run_children", "split_rounds"]


def split_rounds(rounds: int, processes: int) -> list[int]:
    """`rounds` dealt to at most `processes` children, none empty: 9 over 3 -> [3, 3, 3]."""
    base, extra = divmod(rounds, processes)
    return [n for i in range(processes) if (n := base + (i < extra))]


def child_argv(args: argparse.Namespace, names: Sequence[str], rounds: int, out: Path,
               min_time: float) -> list[str]:  # fmt: skip
    """The command line of one child: this run's settings, its share of the rounds."""
    argv = [*names, "--processes", "1", "--rounds", str(rounds), "--warmup", str(args.warmup),
            "--min-time", repr(min_time), "--out", str(out),
            "--cache", str(args.cache or args.out)]  # fmt: skip
    argv += ["--quick"] if args.quick else ["--full"] if args.full else []
    if args.data_root is not None:
        argv += ["--data-root", str(args.data_root)]
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    return argv


def run_children(argvs: Sequence[Sequence[str]], outs: Sequence[Path]) -> list[dict[str, Any]]:
    """Run each child (`python -m benchmarks ARGV`) in turn; their report.json contents."""
    reports = []
    for i, (argv, out) in enumerate(zip(argvs, outs), start=1):
        print(f"== process {i} of {len(argvs)}", flush=True)
        subprocess.run([sys.executable, "-m", "benchmarks", *argv], check=False)
        found = sorted(out.glob("*/report.json"))
        if not found:
            raise BenchError(f"benchmark process {i} wrote no report under {out}")
        reports.append(read_json(found[-1]))
    return reports


def pool_sessions(name: str, results: Sequence[dict[str, Any]], session: Session
                  ) -> dict[str, Any]:  # fmt: skip
    """Fill `session` with benchmark `name` pooled over the children's `results` (their
    report entries); return its status entry. Tables, notes and plots are the first
    child's; a child that failed or skipped makes the pooled entry say so."""
    bad = next((r for r in results if r["status"] != "ok"), None)
    entry = {"status": "ok", "error": None, "doc": results[0]["doc"],
             "wall_s": sum(r["wall_s"] for r in results)}  # fmt: skip
    if bad is not None:
        return {**entry, "status": bad["status"], "error": bad["error"]}
    parts = [[Comparison.from_dict(c) for c in r["comparisons"]] for r in results]
    cases = [[c.case for c in p] for p in parts]
    if any(c != cases[0] for c in cases):
        raise BenchError(f"{name}: the processes measured different cases: {cases}")
    session.load(results[0])  # tables, notes and plots: the first process's
    session.comparisons = [Comparison.pooled(group) for group in zip(*parts)]
    session.files = [_adopt(Path(f), session.out) for f in session.files]
    return entry


def _adopt(path: Path, out: Path) -> str:
    """A child's plot copied into the pooled report's folder."""
    target = out / path.name
    if path.is_file():
        shutil.copyfile(path, target)
    return str(target)
