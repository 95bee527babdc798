"""`bench study run` end to end on a tiny study: real `bench train` cells through submitit.

The tiny study retrains a resnet20-se ticket on a Fashion-MNIST-format sample (12 images a
class, 1 epoch) for two seeds, then draws the leaderboard. Against its sequential run: the
same study with --jobs 2; a driver SIGKILLed mid-study and rerun (each cell started once);
the same study on a real single-node SLURM (scripts/slurm.sh). A failing search stops only
the cells that need its ticket, and the command exits 1.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bench.ticket.schema import make_ticket

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 600
COMPARED = (
    "task",
    "dataset",
    "ticket_checksum",
    "n",
    "n_failed",
    "seeds",
    "mean",
    "std",
    "min",
    "max",
    "params_saved",
    "gflops_saved",
)  # fmt: skip  (timings vary)
CELLS = ("train/t/s0", "train/t/s1", "leaderboard")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    from fixtures import write_fashion_mnist_idx

    root = tmp_path_factory.mktemp("study")
    write_fashion_mnist_idx(root / "data" / "fashion-mnist", train_per_class=12, test_per_class=2)
    prov = {"kind": "published", "citation": "test", "source": "test"}
    ticket = make_ticket("r20-se-t", "resnet20", "se", [1, 0, 0, 1, 0, 1, 0, 0, 1], prov)
    ticket.save(root / "t.json")
    return {"root": root, "data": root / "data", "ticket": root / "t.json"}


def write_study(setup: dict[str, Path], name: str, extra: str = "") -> Path:
    path = setup["root"] / f"{name}.toml"
    path.write_text(f"""
name = "{name}"
seeds = [0, 1]
tickets = ["{setup["ticket"]}"]
data_root = "{setup["data"]}"
{extra}
[pretraining]
dataset = "fashion-mnist"
preset = "short"
flags = {{ epochs = 1, batch-size = 32, lr = 0.05, warmup-epochs = 0, heldout = 40 }}
[leaderboard]
format = "csv"
""")
    return path


def driver(study: Path, out: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.cli.main",
        "study",
        "run",
        str(study),
        "--out",
        str(out),
        *args,
    ]


def env(setup: dict[str, Path], **extra: str) -> dict[str, str]:
    return {**os.environ, "TICKETBENCH_CACHE": str(setup["root"] / "cache"), **extra}


def run(setup, study: Path, out: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(driver(study, out, *args), capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env(setup, **extra), check=False)  # fmt: skip


def board(out: Path) -> list[dict[str, str]]:
    with open(out / "leaderboards" / "summary.csv", newline="") as f:
        return sorted(({k: r[k] for k in COMPARED} for r in csv.DictReader(f)),
                      key=lambda r: (r["task"], r["ticket_checksum"]))  # fmt: skip


def records(out: Path) -> dict[tuple[str, int], float]:
    recs = [json.loads(p.read_text()) for p in (out / "records").rglob("*.json")]
    return {(r["identity"]["ticket_checksum"], r["provenance"]["seed"]): r["result"]["value"]
            for r in recs}  # fmt: skip


def starts(out: Path, study: str, cell: str) -> list[dict]:
    path = out / "study" / study / "cells" / cell.replace("/", ".") / "starts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def reference(setup) -> Path:
    """The tiny study run one cell after another."""
    out = setup["root"] / "sequential"
    done = run(setup, write_study(setup, "tiny"), out, "--jobs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "r20-se-t" in done.stdout  # the leaderboard ends the run
    return out


@pytest.mark.slow
def test_two_jobs_at_once_equal_the_sequential_run(setup, reference):
    out = setup["root"] / "parallel"
    done = run(setup, write_study(setup, "tiny"), out, "--launcher", "local", "--jobs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert records(out) == records(reference) and len(records(out)) == 2
    assert board(out) == board(reference)
    s0, s1 = starts(out, "tiny", "train/t/s0"), starts(out, "tiny", "train/t/s1")
    assert len(s0) == len(s1) == 1
    ended = json.loads((out / "study/tiny/cells/train.t.s0/exit.json").read_text())["ended"]
    assert s1[0]["since"] <= ended  # the second cell started while the first ran


@pytest.mark.slow
def test_local_cells_get_gpus_of_their_own(setup, reference):
    """--gpus-per-job 1 on a machine that shows GPUs 3 and 5: the two train cells run at
    once, each seeing one GPU of its own (CUDA_VISIBLE_DEVICES); results as on the CPU."""
    out = setup["root"] / "gpus"
    done = run(setup, write_study(setup, "tiny"), out, "--jobs", "2", "--gpus-per-job", "1",
               CUDA_VISIBLE_DEVICES="3,5")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    seen = [starts(out, "tiny", c)[0]["gpus"] for c in ("train/t/s0", "train/t/s1")]
    assert sorted(seen) == ["3", "5"]
    assert records(out) == records(reference)
    three = run(setup, write_study(setup, "three"), out, "--jobs", "2", "--gpus-per-job", "3",
                CUDA_VISIBLE_DEVICES="3,5")  # fmt: skip
    assert three.returncode == 2 and "needs 3 GPU(s); this machine shows 2" in three.stderr


@pytest.mark.slow
def test_killed_driver_rerun_runs_each_cell_once(setup, reference):
    study, out = write_study(setup, "tiny"), setup["root"] / "killed"
    proc = subprocess.Popen(driver(study, out, "--jobs", "1"), env=env(setup),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    while not starts(out, "tiny", "train/t/s0") and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # the driver only: its job lives on
    proc.wait()
    assert starts(out, "tiny", "train/t/s0"), "the first cell never started"
    done = run(setup, study, out, "--jobs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "running  train/t/s0  (pid" in done.stderr  # waited on the old job's live lock
    assert board(out) == board(reference)
    for cell in CELLS:
        assert len(starts(out, "tiny", cell)) == 1, cell
    for metrics in out.glob("train_*/metrics.jsonl"):
        epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
        assert epochs == sorted(set(epochs)), metrics


@pytest.mark.slow
def test_failed_cell_stops_only_its_dependents(setup):
    empty = setup["root"] / "empty"
    empty.mkdir(exist_ok=True)
    extra = f"""
[search]
dataset = "fashion-mnist"
model = "resnet20-se"
preset = "short"
ticket = "{setup["root"]}/searched.json"
data_root = "{empty}"
"""
    study, out = write_study(setup, "failing", extra), setup["root"] / "failing"
    done = run(setup, study, out, "--jobs", "2")
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "1 cell(s) failed: search: exit 2" in last
    assert "not run because of them: train/searched/s0, train/searched/s1" in last
    assert "r20-se-t" in done.stdout  # the leaderboard of what finished
    assert len(records(out)) == 2  # the listed ticket's cells ran
    assert not starts(out, "failing", "train/searched/s0")


@pytest.mark.slow
def test_study_on_a_real_slurm(setup, reference):
    """scripts/slurm.sh starts a single-node SLURM; the study runs through sbatch."""
    here = Path(tempfile.mkdtemp(prefix="tb-slurm-"))  # short: munge's socket path
    senv = env(setup, TICKETBENCH_SLURM_DIR=str(here), TICKETBENCH_SLURMCTLD_PORT="16917",
               TICKETBENCH_SLURMD_PORT="16918", SLURM_CONF=str(here / "slurm.conf"))  # fmt: skip
    script = ["bash", str(REPO / "scripts" / "slurm.sh")]
    try:
        up = subprocess.run([*script, "start"], capture_output=True, text=True, env=senv,
                            timeout=TIMEOUT_S, check=False)  # fmt: skip
        if up.returncode != 0:
            pytest.fail(f"SLURM did not start:\n{up.stdout}\n{up.stderr}")
        hostname = subprocess.run(["srun", "hostname"], capture_output=True, text=True,
                                  env=senv, timeout=120, check=False)  # fmt: skip
        assert hostname.returncode == 0, hostname.stderr
        out = setup["root"] / "slurm"
        done = subprocess.run(
            driver(write_study(setup, "tiny"), out, "--launcher", "slurm", "--jobs", "2",
                   "--mem", "2G", "--cpus-per-job", "1", "--time", "30"),
            capture_output=True, text=True, env=senv, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert board(out) == board(reference)
        jobs = [starts(out, "tiny", c)[0]["job"] for c in CELLS]
        assert all(j and j.isdigit() for j in jobs), jobs  # each cell ran as a SLURM job
    finally:
        subprocess.run([*script, "stop"], env=senv, timeout=120, check=False)
        shutil.rmtree(here, ignore_errors=True)
