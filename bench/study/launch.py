"""`bench study run`: submit each cell once its dependencies are done, through submitit.

The driver keeps no state of its own: every tick it reads the cells' states from the files
(bench.study.state), submits the ready cells (at most --jobs at once), resubmits a cell
whose job was killed or preempted (the run resumes exactly), never submits the dependents of
a failed cell, and ends with the leaderboard over whatever finished. A killed driver loses
nothing: rerun it, and cells still running in jobs of the old one are waited for (their cell
lock has a live holder), finished ones are skipped.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.study.job import STDOUT_FILE, JobResult, run_cell_job
from bench.study.plan import Plan, build_plan
from bench.study.report import state_line
from bench.study.schema import Launcher, Study
from bench.study.state import CellState, cell_dir, plan_states
from bench.util.errors import BenchError, RunsFailed
from bench.util.progress import show_progress

log = logging.getLogger(__name__)
# Seconds between ticks: a local job is one process to look at; on SLURM every tick may ask
# squeue about each job, so the scheduler is asked less often.
POLL_S = {"local": 0.5, "slurm": 3.0}
LOCAL_TIMEOUT_MIN = 60 * 24 * 30  # a local job is never cut short
SLURM_TIME_MIN = 60 * 24  # a cell longer than this is resubmitted and resumes
GONE_POLLS = 3  # a SLURM job absent from squeue this many polls, without a result: killed
SETTLED = ("done", "failed", "blocked")


def make_executor(study: Study, launcher: Launcher, folder: Path) -> Any:
    """submitit's LocalExecutor or SlurmExecutor with the launcher's settings."""
    import submitit

    logging.getLogger("submitit").setLevel(logging.ERROR)  # sacct-less clusters warn each poll
    if launcher.name == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(
            timeout_min=launcher.time or LOCAL_TIMEOUT_MIN, gpus_per_node=launcher.gpus_per_job
        )
        return ex
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
    params: dict[str, Any] = {
        "job_name": f"bench-{study.name}",
        "nodes": 1,
        "ntasks_per_node": 1,
        "time": launcher.time or SLURM_TIME_MIN,
    }
    optional = {
        "partition": launcher.partition,
        "cpus_per_task": launcher.cpus_per_job,
        "gpus_per_node": launcher.gpus_per_job or None,
        "mem": launcher.mem,
        "account": launcher.account,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    extra = {}
    for line in launcher.sbatch:
        key, eq, value = line[2:].partition("=")
        extra[key.replace("-", "_")] = value if eq else True
    if extra:
        params["additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


@dataclass
class GpuPool:
    """The local machine's GPUs, each lent to one running cell at a time (submitit's
    LocalExecutor would show every job the first N GPUs)."""

    free: list[int]
    held: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def take(self, cell_id: str, n: int) -> tuple[int, ...] | None:
        """`n` free GPU ids for `cell_id`, or None until enough are free."""
        if n > len(self.free):
            return None
        ids, self.free = tuple(self.free[:n]), self.free[n:]
        self.held[cell_id] = ids
        return ids

    def give(self, cell_id: str) -> None:
        self.free = sorted(self.free + list(self.held.pop(cell_id, ())))


def local_gpu_ids() -> list[int]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES's numbers, else torch's count."""
    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if seen is not None and all(v.strip().isdigit() for v in seen.split(",") if v.strip()):
        return [int(v) for v in seen.split(",") if v.strip()]
    import torch

    return list(range(torch.cuda.device_count()))


@dataclass
class _Flight:
    job: Any
    gone: int = 0  # polls a SLURM job was missing from squeue


@dataclass
class _Driver:
    study: Study
    launcher: Launcher
    plan: Plan
    executor: Any
    say: Any
    flights: dict[str, _Flight] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # failed in this run: reason
    ok: set[str] = field(default_factory=set)  # exited 0 in this run
    shown: dict[str, str] = field(default_factory=dict)
    gpus: GpuPool | None = None  # the local launcher's GPUs (None: SLURM allocates them)

    def submit(self, cell_id: str) -> bool:
        """Submit a ready cell; False while the GPUs it needs are held by running cells."""
        cell = self.plan.by_id[cell_id]
        if self.launcher.name == "slurm":  # each job asks for its cell's GPUs
            self.executor.update_parameters(gpus_per_node=cell.gpus or None)
        elif self.gpus is not None:
            ids = self.gpus.take(cell_id, cell.gpus)
            if ids is None:
                return False
            self.executor.update_parameters(gpus_per_node=len(ids), visible_gpus=ids)
        folder = cell_dir(self.plan, cell)
        folder.mkdir(parents=True, exist_ok=True)
        job = self.executor.submit(run_cell_job, cell, str(folder), os.getcwd())
        self.flights[cell_id] = _Flight(job)
        self.tries[cell_id] = self.tries.get(cell_id, 0) + 1
        return True

    def collect(self) -> bool:
        """Settle finished jobs; True when a search finished (the plan learns its ticket)."""
        searched = False
        for cell_id, flight in list(self.flights.items()):
            outcome = self._outcome(flight)
            if outcome is None:
                continue
            del self.flights[cell_id]
            if self.gpus is not None:
                self.gpus.give(cell_id)
            if isinstance(outcome, JobResult) and outcome.rc is not None and outcome.rc > 0:
                self.failed[cell_id] = f"exit {outcome.rc}: {outcome.said}"
            elif isinstance(outcome, JobResult) and outcome.rc == 0:
                self.ok.add(cell_id)
                searched |= self.plan.by_id[cell_id].kind == "search"
            elif isinstance(outcome, str) and self.tries[cell_id] > self.launcher.retries:
                self.failed[cell_id] = f"{outcome}, {self.tries[cell_id]} times"
            elif isinstance(outcome, str):
                self.say(f"{cell_id}: {outcome}; resubmitting (it resumes)")
        return searched

    def _outcome(self, flight: _Flight) -> JobResult | str | None:
        """The job's JobResult, a string when it was killed, None while it runs."""
        job = flight.job
        if not job.done():
            if self.launcher.name != "slurm" or job.paths.result_pickle.exists():
                return None
            flight.gone = flight.gone + 1 if not _in_squeue(job.job_id) else 0
            if flight.gone < GONE_POLLS:
                return None
            return f"job {job.job_id} ended without a result (killed or preempted)"
        try:
            result = job.result()
        except Exception as e:  # submitit: the job was killed, preempted or timed out
            return f"job {job.job_id} ended without a result ({type(e).__name__})"
        if result.rc is not None and result.rc < 0:
            return f"its command was killed (signal {-result.rc})"
        return result

    def view(self, states: dict[str, CellState]) -> dict[str, tuple[str, str]]:
        """Each cell's state as this driver acts on it."""
        view: dict[str, tuple[str, str]] = {}
        for cell in self.plan.cells:
            s = states[cell.id]
            if cell.id in self.failed:
                view[cell.id] = ("failed", self.failed[cell.id])
            elif cell.id in self.flights:
                view[cell.id] = ("running", f"job {self.flights[cell.id].job.job_id}")
            elif s.state in ("done", "running"):
                view[cell.id] = (s.state, s.detail)
            elif cell.id in self.ok:  # e.g. the leaderboard over a grid with failed cells
                view[cell.id] = ("done", "")
            else:
                view[cell.id] = _by_deps(cell.kind, cell.deps, view)
        return view

    def show(self, view: dict[str, tuple[str, str]]) -> None:
        for cell_id, (state, detail) in view.items():
            if self.shown.get(cell_id) != state:
                self.shown[cell_id] = state
                self.say(state_line(cell_id, CellState(state, detail)))


def _by_deps(kind: str, deps: tuple[str, ...], view: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """ready, waiting on named cells, or blocked by a failed one (the leaderboard only waits
    for every other cell to settle: it reports whatever finished)."""
    if kind == "leaderboard":
        open_ = [d for d in deps if view[d][0] not in SETTLED]
        return ("waiting", ", ".join(open_)) if open_ else ("ready", "")
    bad = [d for d in deps if view[d][0] in ("failed", "blocked")]
    if bad:
        return "blocked", f"{bad[0]} failed" if view[bad[0]][0] == "failed" else view[bad[0]][1]
    open_ = [d for d in deps if view[d][0] != "done"]
    return ("waiting", ", ".join(open_)) if open_ else ("ready", "")


def _in_squeue(job_id: str) -> bool:
    """Whether SLURM still lists the job (True when squeue cannot tell)."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job_id), "-o", "%i"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True
    if out.returncode == 0:
        return bool(out.stdout.strip())
    return "invalid job id" not in out.stderr.lower()  # purged already: gone


def run_study(study: Study, launcher: Launcher) -> str:
    """Run every cell of `study`; the leaderboard's text. RunsFailed (exit 1) naming the
    failed cells and the ones left out because of them."""
    from tqdm import tqdm

    plan = build_plan(study)
    pool = _local_gpus(plan) if launcher.name == "local" else None
    folder = study.out / "study" / study.name / "submitit"
    bar = tqdm(
        total=len(plan.cells),
        desc=f"study {study.name}",
        unit="cell",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not show_progress(None),
    )
    say = log.info  # stderr through the bench handler, around the bar (stdout: the leaderboard)
    d = _Driver(study, launcher, plan, make_executor(study, launcher, folder), say)
    d.gpus = pool
    jobs = launcher.jobs or (1 if launcher.name == "local" else len(plan.cells))
    try:
        while True:
            if d.collect():
                d.plan = plan = build_plan(study)  # the searched ticket now exists
            view = d.view(plan_states(plan, deep=False))  # every tick: no checkpoint reads
            d.show(view)
            settled = sum(v[0] in SETTLED for v in view.values())
            if settled != bar.n:
                bar.update(settled - bar.n)
            ready = [c.id for c in plan.cells if view[c.id][0] == "ready"]
            for cell_id in ready:
                if len(d.flights) < jobs:
                    d.submit(cell_id)
            if not ready and all(v[0] in SETTLED + ("waiting",) for v in view.values()):
                break  # nothing runs and nothing can start
            time.sleep(POLL_S[launcher.name] if d.flights or not ready else 0)
    finally:
        bar.close()
    return _finish(plan, view)


def _local_gpus(plan: Plan) -> GpuPool | None:
    """The machine's GPUs for a local study whose cells ask for some (BenchError when a cell
    asks for more than there are); None when no cell does."""
    if not any(c.gpus for c in plan.cells):
        return None
    pool = GpuPool(local_gpu_ids())
    need = max(plan.cells, key=lambda c: c.gpus)
    if need.gpus > len(pool.free):
        raise BenchError(
            f"{need.id} needs {need.gpus} GPU(s); this machine shows {len(pool.free)} to the "
            "local launcher (--gpus-per-job, or a table's gpus)"
        )
    return pool


def _finish(plan: Plan, view: dict[str, tuple[str, str]]) -> str:
    board = cell_dir(plan, plan.cells[-1]) / STDOUT_FILE
    text = board.read_text(encoding="utf-8") if view["leaderboard"][0] == "done" else ""
    failed = [f"{c}: {d}" for c, (s, d) in view.items() if s == "failed"]
    blocked = [c for c, (s, _) in view.items() if s in ("blocked", "waiting")]
    if failed:
        print(text, end="")
        lines = [f"{len(failed)} cell(s) failed: " + "; ".join(failed)]
        if blocked:
            lines.append(f"not run because of them: {', '.join(blocked)}")
        raise RunsFailed(" | ".join(lines))
    return text
