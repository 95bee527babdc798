"""The run-directory lock: a second process on a run in progress is refused with one line
naming the holder (pid and host), `--mode cover` never wipes a held directory, and the
lock of a killed holder is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.engine.hparams import TrainHParams
from bench.engine.rundir import LOCK_FILE, prepare_run, release_run
from bench.util.errors import BenchError
from bench.util.io import HOST

ROOT = Path(__file__).resolve().parents[1]
IDENT = {"dataset": "blobs", "model": "tiny"}
HOLD = (
    "import sys, time\n"
    "from bench.engine.hparams import TrainHParams\n"
    "from bench.engine.rundir import prepare_run\n"
    f"prepare_run(sys.argv[1], 'train', {IDENT!r}, TrainHParams(seed=7))\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _start_and_wait(cmd: list[str], marker: str, stream: str = "stdout") -> subprocess.Popen:
    """Start `cmd` and read its `stream` until a line holds `marker`."""
    pipe = {stream: subprocess.PIPE}
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, text=True, **pipe)  # type: ignore[call-overload]
    for line in getattr(proc, stream):
        if marker in line:
            return proc
    proc.wait()
    raise AssertionError(f"{cmd} ended (rc {proc.returncode}) before {marker!r}")


def test_a_held_run_directory_is_refused_then_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hp = TrainHParams(seed=7)
    holder = _start_and_wait([sys.executable, "-c", HOLD, str(tmp_path)], "held")
    try:
        [run] = [p for p in tmp_path.iterdir() if p.name.startswith("train_")]
        for mode in ("new", "cover"):
            with pytest.raises(BenchError) as err:
                prepare_run(tmp_path, "train", IDENT, hp, mode=mode)
            msg = str(err.value)
            assert f"pid {holder.pid} on host {HOST}" in msg and str(run) in msg
            assert "\n" not in msg
        # cover did not touch the held directory
        assert sorted(p.name for p in run.iterdir()) == ["hparams.json", LOCK_FILE]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    caplog.clear()
    # The holder was killed: its lock is stale and taken over, with a warning.
    plan = prepare_run(tmp_path, "train", IDENT, hp, mode="cover")
    assert plan.path == run and plan.action == "start"
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"taking over from pid {holder.pid}" in line
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert prepare_run(tmp_path, "train", IDENT, hp).path == run  # re-entrant
    release_run(run)
    assert (run / LOCK_FILE).read_text() == ""  # released cleanly: nothing to take over
    caplog.clear()
    prepare_run(tmp_path, "train", IDENT, hp)
    assert "taking over" not in caplog.text
    release_run(run)


@pytest.mark.slow
def test_second_bench_train_exits_2_naming_the_first(tmp_path: Path) -> None:
    from fixtures import write_fashion_mnist_idx

    data = write_fashion_mnist_idx(tmp_path / "fm", train_per_class=10, test_per_class=2)
    args = [sys.executable, "-m", "bench.cli.main", "train", "fashion-mnist", "resnet20-se",
            "--mask", "full", "--data-root", str(data), "--out", str(tmp_path / "out"),
            "--epochs", "1", "--batch-size", "16", "--heldout", "20"]  # fmt: skip
    env = {**_env(), "TICKETBENCH_CACHE": str(tmp_path / "cache")}
    first = subprocess.Popen(args, env={**env, "TICKETBENCH_PAUSE_AT": "train.step@2"},
                             cwd=ROOT, text=True, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert first.stderr is not None
        assert any("paused at train.step" in line for line in first.stderr)
        second = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and f"pid {first.pid}" in second.stderr
        assert not (tmp_path / "out" / "records").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"taking over from pid {first.pid}" in third.stderr
    assert len(list((tmp_path / "out" / "records").rglob("*.json"))) == 1
