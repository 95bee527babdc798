"""`bench search` SIGKILLed for real, resumed, and ending exactly where an uninterrupted run ends.

Each kill is a real SIGKILL of a real `bench search` process (bench.util.faults: the process
kills itself at a named point, so the point is exact and the test deterministic; no
cleanup, no finally block runs). One run directory goes through every kill in turn, each
resume starting from what the previous kill left; the final ticket, episode and step logs,
plot and supernet weights must equal those of one uninterrupted run, and no temporary file
of a killed write may be left anywhere.

Kill points (6): mid-epoch in supernet training (resumed from a mid-epoch checkpoint),
during a supernet latest.pt write, during a search step (its log lines appended, its
checkpoint not yet written), during a search_state.pt write, during the ticket write and
during the ticket's copy to --save-ticket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures_search import DATASET, MODEL

from bench.engine.rundir import ENV_CHECKPOINT_EVERY
from bench.util.faults import ENV_KILL_AT

ROOT = Path(__file__).resolve().parent.parent
# 200 supernet images at batch 32: 7 steps per epoch, 14 in all; 4 controller steps x 3.
ARGS = [
    "--iters", "4", "--budget", "12", "--eval-subset", "20", "--supernet-epochs", "2",
    "--supernet-train-size", "200", "--supernet-batch-size", "32",
]  # fmt: skip
# (kill point, what it interrupts). The supernet checkpoints every 3 steps inside an epoch
# in the killed runs (the interval is not part of the run's identity; the reference run
# uses the default), so the first kill resumes mid-epoch.
KILLS = [
    ("train.step@11", "supernet training, mid-epoch 2"),
    ("write:latest.pt@2", "a supernet checkpoint write"),
    ("search.step@2", "a search step: its log lines written, its checkpoint not"),
    ("write:search_state.pt@2", "a search checkpoint write"),
    ("write:ticket.json@1", "the ticket write after the search finished"),
    ("write:killed.json@1", "the copy of the ticket to --save-ticket"),
]


def _bench(out: Path, data_root: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    save = out / "tickets" / "killed.json"
    argv = ["search", DATASET, MODEL, "--data-root", str(data_root), "--out", str(out / "runs")]
    base = {k: v for k, v in os.environ.items() if k not in (ENV_KILL_AT, ENV_CHECKPOINT_EVERY)}
    return subprocess.run(
        [sys.executable, "-m", "bench.cli.main", *argv, *ARGS, "--save-ticket", str(save)],
        cwd=ROOT,
        env={**base, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


def _outputs(out: Path) -> dict[str, bytes]:
    (search,) = (out / "runs").glob("search_*")
    files = {name: (search / name).read_bytes() for name in ("ticket.json", "search.png")}
    for name in ("episodes.jsonl", "steps.jsonl"):
        files[name] = (search / name).read_bytes()
    files["saved"] = (out / "tickets" / "killed.json").read_bytes()
    return files


def _weights(out: Path) -> dict[str, torch.Tensor]:
    (sup,) = (out / "runs").glob("supernet_*")
    return torch.load(sup / "latest.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_search_killed_at_every_stage_ends_like_an_uninterrupted_run(
    tmp_path: Path, search_fmnist_root: Path
) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    whole = _bench(ref, search_fmnist_root, {})
    assert whole.returncode == 0, whole.stderr

    every_3 = {ENV_CHECKPOINT_EVERY: "3b"}
    for point, what in KILLS:
        run = _bench(killed, search_fmnist_root, {**every_3, ENV_KILL_AT: point})
        assert run.returncode == -signal.SIGKILL, f"{point} ({what}) never fired: {run.stderr}"
        if point.startswith("write:"):  # killed mid-write: its temporary file is still there
            assert _temps(killed), point
    assert (killed / "runs").is_dir() and not (killed / "tickets" / "killed.json").exists()
    last = _bench(killed, search_fmnist_root, every_3)
    assert last.returncode == 0, last.stderr

    assert _outputs(killed) == _outputs(ref)
    a, b = _weights(ref), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _temps(killed) == [] and _temps(ref) == []
