"""python -m benchmarks [NAME ...] [--quick]: run the side-by-side benchmarks, write a report.

Each benchmark times both sides of every ratio interleaved in this one process (warm-up,
then 9 rounds by default, each side called back to back for at least --min-time per round)
and reports the median and spread of the per-round ratio. The report (report.json and
report.md, plus plots) goes to OUT/<UTC time>/; it is rewritten after each benchmark, so an
interrupted run keeps what it measured. `python -m benchmarks compare A.json B.json` says
whether two runs agree within their spreads (benchmarks.agreement).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.util.errors import BenchError
from bench.util.io import atomic_write_json, atomic_write_text
from benchmarks.harness import Session, _duration, default_min_time, session_markdown
from benchmarks.processes import child_argv, pool_sessions, run_children, split_rounds

# name -> module; run in this order. Only `seg` imports mmseg.
BENCHMARKS = {
    "core": "benchmarks.core",
    "train": "benchmarks.training",
    "search": "benchmarks.search",
    "decode": "benchmarks.decode",
    "density": "benchmarks.density",
    "seg": "benchmarks.segmentation",
    "cuda": "benchmarks.cuda",  # skipped without CUDA
}


def machine() -> dict[str, Any]:
    """CPU model, cores, threads, torch and device (bench.util.environment), and the load."""
    from bench.util.environment import environment

    env = environment()
    env["cores_available"] = len(os.sched_getaffinity(0))
    env["load_average_start"] = list(os.getloadavg())
    env["busy_cores_start"] = busy_cores()
    return env


def busy_cores(seconds: float = 0.5) -> float | None:
    """How many cores other processes kept busy over the last `seconds` (/proc/stat; None
    elsewhere). Unlike the load average it does not still count a run that just ended."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 == total0:
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n")[0],
        epilog="example: python -m benchmarks core density --quick; "
        "python -m benchmarks compare A/report.json B/report.json",
    )
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(BENCHMARKS)}")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smallest sizes, 3 rounds (smoke run)")
    full = "the whole grid at full sizes (far over 10 minutes on 2 cores: a bigger machine)"
    size.add_argument("--full", action="store_true", help=full)
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds (default 9; quick 3)")
    ap.add_argument(
        "--min-time",
        type=float,
        default=None,
        metavar="S",
        help="least seconds each side runs per round (default 0.1; quick 0.02)",
    )
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds before timing")
    ap.add_argument(
        "--processes",
        type=int,
        default=None,
        help="run the rounds in N processes one after another and pool them, so the spread "
        "holds what differs between runs (default 4; quick 1)",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/benchmarks"), help="report root")
    # A child process of a pooled run keeps what runs reuse (a supernet) in its parent's root.
    ap.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data-root", type=Path, default=None, help="Fashion-MNIST folder")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return ap


def _check(args: argparse.Namespace) -> list[str]:
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise BenchError(f"benchmark {unknown[0]!r}: expected any of {', '.join(BENCHMARKS)}")
    if args.rounds is not None and args.rounds < 1:
        raise BenchError(f"--rounds {args.rounds}: expected at least 1")
    if args.threads is not None and args.threads < 1:
        raise BenchError(f"--threads {args.threads}: expected at least 1")
    if args.min_time is not None and not 0 <= args.min_time < float("inf"):
        raise BenchError(f"--min-time {args.min_time}: expected seconds, finite, at least 0")
    if args.processes is not None and args.processes < 1:
        raise BenchError(f"--processes {args.processes}: expected at least 1")
    if args.warmup < 0:
        raise BenchError(f"--warmup {args.warmup}: expected at least 0")
    if args.out.exists() and not args.out.is_dir():
        raise BenchError(f"--out {args.out}: expected a folder")
    return list(dict.fromkeys(names))


def run_one(name: str, s: Session) -> dict[str, Any]:
    """Run benchmark `name` into session `s`: its status, wall time and doc."""
    t0 = time.perf_counter()
    result: dict[str, Any] = {"status": "ok", "error": None, "doc": ""}
    try:
        module = importlib.import_module(BENCHMARKS[name])
        result["doc"] = (module.__doc__ or "").strip().split("\n\n")[0]
        module.run(s)
    except BenchError as e:  # a missing prerequisite (data set): said in one line
        result.update(status="skipped", error=str(e))
    except Exception as e:  # noqa: BLE001 - one benchmark's failure must not lose the others
        traceback.print_exc()
        result.update(status="failed", error=f"{type(e).__name__}: {e}")
    result["wall_s"] = time.perf_counter() - t0
    return result


BUSY_CORES = 0.5  # cores kept busy by other work at start from which it competes


def busy_warning(m: dict[str, Any]) -> str:
    """A warning when other processes were using the cores at start ("" when quiet): the
    cores busy just before the start, or where that is unknown the load average."""
    busy = m.get("busy_cores_start")
    if busy is not None:
        if busy < BUSY_CORES:
            return ""
        said = f"{busy:.1f} cores busy"
    else:
        if m["load_average_start"][0] < 2 * BUSY_CORES:
            return ""
        said = f"load average {m['load_average_start'][0]:.2f}"
    return (
        f"Busy machine: {said} at start on {m['cores_available']} cores; "
        "other processes compete with the timed sides (with several torch threads, far "
        "worse than with one), so these figures may not reproduce: rerun on a quiet machine "
        "and check two runs with `python -m benchmarks compare A.json B.json`."
    )


def smoke_warning(report: dict[str, Any]) -> str:
    """A warning when the run is too short to measure ("" otherwise): under 7 rounds no
    95% CI exists, and without a warm-up round the first calls pay one-off costs (a
    one-round run without one read 1.59 for a ratio that measures 1.01)."""
    short = report["rounds"] < 7
    if not short and report["warmup"] > 0:
        return ""
    n = report["rounds"]
    what = [f"{n} round" + ("s" if n != 1 else "")] if short else []
    what += ["no warm-up"] if report["warmup"] == 0 else []
    return (f"Smoke run ({', '.join(what)}): these figures show that the benchmarks run; "
            "they are not measurements (7 rounds or more after a warm-up are).")  # fmt: skip


def _busy(m: dict[str, Any]) -> str:
    busy = m.get("busy_cores_start")
    return "" if busy is None else f"{busy:.1f} cores busy at start, "


def _processes(report: dict[str, Any]) -> str:
    n = report.get("processes", 1)
    if n <= 1:
        return ""
    return (
        f"The {report['rounds']} rounds ran in {n} processes, one after another, and are "
        "pooled: the spread holds what differs between runs, not only between rounds. "
    )


def write_report(out: Path, report: dict[str, Any], sessions: dict[str, Session]) -> str:
    """Write report.json and report.md into `out`; return the Markdown."""
    m = report["machine"]
    head = (
        f"# Benchmarks ({report['mode']} sizes)\n\n"
        f"Started {report['started']}, wall time {_duration(report['wall_s'])}. "
        f"Machine: {m['cpu_model']}, {m['cpu_count']} cores ({m['cores_available']} "
        f"available), torch {m['torch']} on {m['device']} ({m['device_model']}), "
        f"{m['threads']} threads; {_busy(m)}load average {m['load_average_start'][0]:.2f} "
        f"at start, {report['load_average_end'][0]:.2f} at end.\n\n"
        f"{_processes(report)}"
        "Each figure is the median of per-round values (every side timed once per round, "
        f"in shuffled order, after {report['warmup']} warm-up round(s); within a round a "
        f"side is called back to back until it has run at least {report['min_time_s']:g} s, "
        "the same number of calls for every side of a case unless their speeds are far "
        "apart: calls/round); spread: the least to the greatest per-round value; 95% CI "
        "of median: its distribution-free confidence interval (with 7 or 8 rounds: the "
        "spread). A missed target says whether that CI reaches it.\n"
    )
    for warning in (busy_warning(m), smoke_warning(report)):
        head += f"\n**{warning}**\n" if warning else ""
    parts = [head]
    for name, res in report["benchmarks"].items():
        parts.append(session_markdown(name, res["doc"], res, sessions.get(name)))
    text = "\n".join(parts)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compare"]:
        from benchmarks.agreement import main as compare

        return compare(argv[1:])
    args = _parser().parse_args(argv)
    try:
        names = _check(args)
    except BenchError as e:
        print(f"benchmarks: error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 9)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    mode = "quick" if args.quick else "full" if args.full else "default"
    out = args.out / (stamp + ("" if mode == "default" else f"-{mode}"))
    out.mkdir(parents=True, exist_ok=True)
    min_time = default_min_time(mode) if args.min_time is None else args.min_time
    processes = min(args.processes or (1 if args.quick else 4), rounds)
    report: dict[str, Any] = {
        "started": stamp, "mode": mode, "rounds": rounds, "warmup": args.warmup,
        "min_time_s": min_time, "processes": processes, "machine": machine(), "benchmarks": {},
    }  # fmt: skip
    if warning := busy_warning(report["machine"]):
        print(f"benchmarks: warning: {warning}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        if processes > 1:
            text = _pooled(args, names, report, out, min_time)
        else:
            text = _in_process(args, names, report, out, min_time, t0)
    except KeyboardInterrupt:
        print(f"benchmarks: interrupted; finished benchmarks are in {out}", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"benchmarks: error: {e}", file=sys.stderr)
        return 1
    print(f"\n{text}\nreport: {out / 'report.md'}")
    failed = [n for n, r in report["benchmarks"].items() if r["status"] == "failed"]
    return 1 if failed else 0


def _session(name: str, report: dict[str, Any], out: Path, args: argparse.Namespace,
             min_time: float) -> Session:  # fmt: skip
    return Session(name, mode=report["mode"], rounds=report["rounds"], warmup=args.warmup,
                   out=out, data_root=args.data_root, min_time=min_time,
                   cache=args.cache or args.out)  # fmt: skip


def _in_process(args: argparse.Namespace, names: Sequence[str], report: dict[str, Any],
                out: Path, min_time: float, t0: float) -> str:  # fmt: skip
    """Run every benchmark here, rewriting the report after each; return its Markdown."""
    sessions: dict[str, Session] = {}
    text = ""
    for name in names:
        print(f"== {name}", flush=True)
        sessions[name] = s = _session(name, report, out, args, min_time)
        res = run_one(name, s)
        report["benchmarks"][name] = {**res, **s.to_dict()}
        report.update(wall_s=time.perf_counter() - t0, load_average_end=list(os.getloadavg()))
        text = write_report(out, report, sessions)
        if res["error"]:
            print(f"  {res['status']}: {res['error']}", flush=True)
    return text


def _pooled(args: argparse.Namespace, names: Sequence[str], report: dict[str, Any],
            out: Path, min_time: float) -> str:  # fmt: skip
    """Run the rounds in child processes one after another and pool them (processes.py)."""
    t0 = time.perf_counter()
    shares = split_rounds(report["rounds"], report["processes"])
    outs = [out / "processes" / f"p{i}" for i in range(len(shares))]
    argvs = [child_argv(args, names, n, o, min_time) for n, o in zip(shares, outs)]
    children = run_children(argvs, outs)
    report["machine"]["per_process"] = [c["machine"] for c in children]
    sessions: dict[str, Session] = {}
    for name in names:
        sessions[name] = s = _session(name, report, out, args, min_time)
        entry = pool_sessions(name, [c["benchmarks"][name] for c in children], s)
        report["benchmarks"][name] = {**entry, **s.to_dict()}
    report.update(wall_s=time.perf_counter() - t0, load_average_end=list(os.getloadavg()))
    return write_report(out, report, sessions)


if __name__ == "__main__":
    sys.exit(main())
