"""What one submitit job runs: a cell's `bench` command as a subprocess, under the cell lock.

The lock (bench.engine.rundir's, on the cell's folder) is held for the whole command, so a
second job of the same cell - from a driver that was killed and rerun while the first job
lives on - finds it held and returns at once instead of running the cell twice. The command
is exactly the plan's (under torchrun for several GPUs); its stdout goes to stdout.txt, its
stderr to log.txt, and each start appends one line to starts.jsonl.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.engine.rundir import hold_run, release_run
from bench.study.plan import Cell, launch_argv
from bench.study.state import EXIT_FILE, LOG_FILE, STARTS_FILE
from bench.util.errors import BenchError
from bench.util.io import HOST, append_jsonl, atomic_write_json

STDOUT_FILE = "stdout.txt"
LOCK_TRIES = 3


@dataclass(frozen=True)
class JobResult:
    """rc: the command's exit code (negative: killed by that signal); None with `busy`
    when another live process held the cell."""

    rc: int | None
    said: str = ""
    busy: str = ""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def executable(name: str) -> str:
    """`name` (bench, torchrun) from the bin folder of the interpreter running this job."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name) or name


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_cell_job(cell: Cell, folder: str, cwd: str) -> JobResult:
    """Run `cell`'s command in `cwd`, holding `folder`'s lock; write exit.json unless the
    command was killed (a killed cell is resumable, not failed)."""
    where = Path(folder)
    for attempt in range(LOCK_TRIES):
        try:
            hold_run(where)
            break
        except BenchError as e:
            if attempt == LOCK_TRIES - 1:
                return JobResult(None, busy=str(e))
            time.sleep(1.0)
    try:
        (where / EXIT_FILE).unlink(missing_ok=True)  # this start's outcome replaces the last
        job = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID")
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES")  # the launcher's choice, where it made one
        start = {"pid": os.getpid(), "host": HOST, "since": _now(), "job": job, "gpus": gpus}
        append_jsonl(where / STARTS_FILE, start)
        argv = launch_argv(cell, executable("bench"), executable("torchrun"))
        with open(where / STDOUT_FILE, "wb") as out, open(where / LOG_FILE, "ab") as log:
            log.write(f"== {_now()} {cell.command}\n".encode())
            log.flush()
            rc = subprocess.run(argv, cwd=cwd, stdout=out, stderr=log, check=False).returncode
        said = _last_line(where / LOG_FILE)
        if rc >= 0:
            atomic_write_json(
                where / EXIT_FILE,
                {"rc": rc, "argv": list(cell.argv), "ended": _now(), "said": said},
            )
        return JobResult(rc, said)
    finally:
        release_run(where)
