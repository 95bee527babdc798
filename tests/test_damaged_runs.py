"""Damaged run directories, from a real short `bench train` run damaged each way a full disk,
a copy between clusters or a hand edit damages it: `bench runs check` names the file and
what is wrong (exit 1), `bench train` refuses in one line (exit 2), `--repair` restores what
the run holds (equal to the lost files apart from timestamps), and the run goes on.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures_bad import run_cli

from bench.engine.state import RecordIndex, read_state
from bench.util.faults import ENV_KILL_AT

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "fashion-mnist", "resnet20-se", "--mask", "full", "--epochs", "2",
         "--batch-size", "16", "--lr", "0.05", "--warmup-epochs", "0", "--heldout", "20",
         "--checkpoint-every", "2b"]  # fmt: skip
VOLATILE = ("timestamp", "wall_time_s", "run_dir")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    from fixtures import write_fashion_mnist_idx

    base = tmp_path_factory.mktemp("damaged")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TICKETBENCH_CACHE", str(base / "cache"))
        data = write_fashion_mnist_idx(base / "fm", train_per_class=6, test_per_class=2)
        yield {"base": base, "data": data}


@pytest.fixture(scope="module")
def finished(env) -> Path:
    """The out root of one finished 2-epoch run (4 checkpoints: previous.pt at step 5)."""
    from bench.cli.main import main

    out = env["base"] / "finished"
    assert main([*TRAIN, "--data-root", str(env["data"]), "--out", str(out)]) == 0
    return out


@pytest.fixture
def out(finished: Path, tmp_path: Path, env) -> Path:
    """A copy of the finished run's out root to damage (its run_dir fields name the original)."""
    return Path(shutil.copytree(finished, tmp_path / "out"))


def _run(out: Path) -> Path:
    (run,) = out.glob("train_*")
    return run


def _record(out: Path) -> Path:
    (rec,) = (out / "records").rglob("*.json")
    return rec


def _train(out: Path, env, capsys) -> tuple[int, str]:
    return run_cli([*TRAIN, "--data-root", env["data"], "--out", out], capsys)


def _check(out: Path, capsys, *flags: str) -> tuple[int, str]:
    from bench.cli.main import main

    capsys.readouterr()
    code = main(["runs", "check", str(out), *flags])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    prov = {k: v for k, v in record["provenance"].items() if k not in VOLATILE}
    return {**record, "provenance": prov}


def _cut(n: int) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(p.read_bytes()[:n])


def _garbage(p: Path) -> None:
    p.write_bytes(b'{"schema_version": 1, \x00\xff garbage')


JSON_DAMAGE = [
    ("truncated", _cut(40), "truncated: not JSON at byte 40"),
    ("zero-bytes", _cut(0), "zero bytes"),
    ("garbage", _garbage, "not UTF-8 text at byte 23"),
]


def test_a_finished_run_reads_as_finished(out: Path, capsys) -> None:
    state = read_state(_run(out))
    assert state.state == "finished" and not state.damage and state.holder is None
    assert (state.ticket, state.task, state.dataset, state.seed) == (
        "resnet20-se-block-full", "classification", "fashion-mnist", 0)  # fmt: skip
    assert (state.epoch, state.epochs, state.step) == (2, 2, 6)
    assert state.proven("latest.pt") and state.proven("previous.pt").step == 5
    assert state.record == _record(out)
    code, text = _check(out, capsys)
    assert code == 0, text
    assert text.splitlines() == [state.line(), "1 run directories: 1 finished"]
    assert "step 6 (epoch 2/2)" in state.line()


@pytest.mark.parametrize(("how", "damage", "what"), JSON_DAMAGE, ids=[c[0] for c in JSON_DAMAGE])
def test_a_damaged_result_is_named_refused_and_restored(
    out: Path, env, capsys, how: str, damage: Callable[[Path], None], what: str
) -> None:
    result = _run(out) / "result.json"
    before = result.read_bytes()
    damage(result)
    code, text = _check(out, capsys)
    assert code == 1 and f"{result}: {what}" in text.splitlines()[0], text
    assert text.splitlines()[0].startswith("damaged ") and "seed 0  step 6" in text
    code, err = _train(out, env, capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{result}: {what}; " in err and f"bench runs check {out} --repair" in err
    code, text = _check(out, capsys, "--repair")
    assert code == 0 and "restored result.json from its record" in text, text
    assert result.read_bytes() == before  # the record is the same dict, so the same bytes
    assert (_run(out) / "damaged" / "result.json").is_file()  # kept, never deleted
    assert _train(out, env, capsys)[0] == 0


def test_a_lost_result_and_record_are_rescored_equal_apart_from_timestamps(
    out: Path, env, capsys
) -> None:
    run, rec = _run(out), _record(out)
    lost = json.loads(rec.read_text())
    _cut(40)(run / "result.json")
    rec.write_bytes(b"")
    code, text = _check(out, capsys)
    assert code == 1 and f"{rec}: zero bytes" in text and "result.json: truncated" in text, text
    code, text = _check(out, capsys, "--repair")
    assert code == 0 and "re-scored train_" in text and "rewrote result.json" in text, text
    again = json.loads((run / "result.json").read_text())
    assert _comparable(again) == _comparable(lost)
    assert json.loads(rec.read_text()) == again
    assert again["provenance"]["run_dir"] == str(run)
    assert {p.name for p in (run / "damaged").iterdir()} == {"result.json", f"record-{rec.name}"}


def test_a_record_of_another_run_is_named_and_rewritten(out: Path, capsys) -> None:
    """Seed 1's record copied over seed 0's: its own fields name another file."""
    rec = _record(out)
    mine = json.loads(rec.read_text())
    other = {**mine, "provenance": {**mine["provenance"], "seed": 1, "run_dir": "x/train_1"}}
    rec.write_text(json.dumps(other))
    code, text = _check(out, capsys)
    assert code == 1 and f"{rec}: record of another run (train_1, " in text, text
    code, text = _check(out, capsys, "--repair")
    assert code == 0 and f"rewrote the damaged record {rec}" in text, text
    assert json.loads(rec.read_text()) == json.loads((_run(out) / "result.json").read_text())


def _unfinished(out: Path) -> Path:
    """The run as a kill just before its result was written leaves it: resumable at the end."""
    run = _run(out)
    (run / "result.json").unlink()
    _record(out).unlink()
    return run


CHECKPOINT_DAMAGE = [
    ("truncated", _cut(5000), "truncated (5000 bytes)"),
    ("zero-bytes", _cut(0), "zero bytes"),
    ("garbage", lambda p: p.write_bytes(bytes(range(256)) * 12), "not a torch checkpoint"),
    ("another-run", None, "checkpoint of another run (hash 0123456789ab)"),
]


def _another_runs(path: Path) -> None:
    """A real checkpoint whose run hash is another run's (as a copy from a sibling run)."""
    ck = torch.load(path, weights_only=True)
    torch.save({**ck, "run_hash": "0123456789ab"}, path)


@pytest.mark.parametrize(
    ("how", "damage", "what"), CHECKPOINT_DAMAGE, ids=[c[0] for c in CHECKPOINT_DAMAGE]
)
def test_a_damaged_latest_falls_back_to_previous_and_the_run_resumes_to_the_same_result(
    out: Path, env, capsys, how: str, damage: Callable[[Path], None] | None, what: str
) -> None:
    lost = json.loads(_record(out).read_text())
    run = _unfinished(out)
    latest = run / "latest.pt"
    (damage or _another_runs)(latest)
    code, text = _check(out, capsys)
    assert code == 1 and f"{latest}: {what}" in text, text
    code, err = _train(out, env, capsys)
    assert code == 2 and "Traceback" not in err and f"{latest}: {what}; " in err, err
    code, text = _check(out, capsys, "--repair")
    assert code == 0, text
    assert "fell back to previous.pt (epoch 1, step 5): the steps after step 5 are lost" in text
    assert read_state(run).state == "resumable" and read_state(run).step == 5
    code, err = _train(out, env, capsys)
    assert code == 0 and "resuming" in err and "at epoch 1/2 batch 2/3 (step 5)" in err, err
    assert _comparable(json.loads(_record(out).read_text())) == _comparable(lost)


def test_a_shallow_read_takes_checkpoints_as_they_are(out: Path) -> None:
    """deep=False (a study driver's tick) never opens a checkpoint: a cut latest.pt reads as
    resumable there, and as damaged in the full read (the run refuses it when it starts)."""
    run = _unfinished(out)
    _cut(5000)(run / "latest.pt")
    assert read_state(run).state == "damaged"
    shallow = read_state(run, deep=False)
    assert shallow.state == "resumable" and shallow.step is None


def test_without_a_proven_previous_checkpoint_the_run_starts_over(out: Path, capsys) -> None:
    run = _unfinished(out)
    _cut(100)(run / "latest.pt")
    _another_runs(run / "previous.pt")
    code, text = _check(out, capsys, "--repair")
    assert code == 0 and "no earlier checkpoint names this run's hash inside" in text, text
    assert "the next run of its command starts it over" in text
    assert read_state(run).state == "new"
    assert sorted(p.name for p in (run / "damaged").iterdir()) == ["latest.pt", "previous.pt"]


def test_damaged_metrics_are_rewritten_from_the_checkpoint(out: Path, capsys) -> None:
    metrics = _run(out) / "metrics.jsonl"
    before = metrics.read_bytes()
    metrics.write_bytes(b"garbage\n" + before)
    code, text = _check(out, capsys)
    assert code == 1 and f"{metrics}: line 1 is not JSON (byte 0)" in text, text
    code, text = _check(out, capsys, "--repair")
    assert code == 0 and "rewrote metrics.jsonl from latest.pt's history (2 epochs" in text
    assert metrics.read_bytes() == before


def test_damaged_hparams_are_moved_aside_and_written_anew(out: Path, env, capsys) -> None:
    meta = _run(out) / "hparams.json"
    before = json.loads(meta.read_text())
    _cut(0)(meta)
    code, text = _check(out, capsys, "--repair")
    assert code == 0 and "moved hparams.json to train_" in text, text
    assert _train(out, env, capsys)[0] == 0  # the finished run is skipped and says who it is
    again = json.loads(meta.read_text())
    assert {k: again[k] for k in ("hash", "identity", "nondefault", "recipe")} == {
        k: before[k] for k in ("hash", "identity", "nondefault", "recipe")
    }


def test_a_stale_lock_is_told_and_removed_a_live_one_is_left_alone(out: Path, capsys) -> None:
    lock = _run(out) / "run.lock"
    lock.write_text(json.dumps({"pid": 2**22 + 7, "host": "h", "since": "then"}))
    from bench.cli.main import main

    capsys.readouterr()
    code = main(["runs", "check", str(out), "--format", "json"])
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert code == 0 and run["state"] == "stale-lock" and run["holder"]["pid"] == 2**22 + 7
    code, text = _check(out, capsys, "--repair")
    assert code == 0 and "removed the stale lock of pid 4194311 on host h" in text, text
    assert lock.read_text() == "" and read_state(lock.parent).state == "finished"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: as another process holds it
        os.write(fd, json.dumps({"pid": os.getpid(), "host": "here"}).encode())
        _cut(10)(lock.parent / "result.json")
        code, text = _check(out, capsys, "--repair")
        assert code == 0 and text.startswith("running ") and f"pid {os.getpid()}" in text, text
        assert len((lock.parent / "result.json").read_bytes()) == 10  # left alone
    finally:
        os.close(fd)


def test_a_damaged_record_of_no_run_is_a_line_of_its_own(out: Path, capsys) -> None:
    stray = out / "records" / "classification" / "fashion-mnist" / "other__x__seed3.json"
    stray.write_text("{")
    code, text = _check(out, capsys)
    assert code == 1 and f"damaged    {stray}: truncated: not JSON at byte 1" in text, text
    assert "1 run directories: 1 finished; 1 damaged records of no run" in text
    assert RecordIndex(out).unreadable[0].file == stray


def _bench(args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop(ENV_KILL_AT, None)
    if kill_at:
        env[ENV_KILL_AT] = kill_at
    cmd = [sys.executable, "-m", "bench.cli.main", *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "damage"),
    [
        ("write:latest.pt@1", "latest"),  # its copy into damaged/ is half made
        ("write:latest.pt@2", "latest"),  # previous.pt half linked over latest.pt
        ("write:result.json@2", "result"),  # the restored result.json half written
    ],
)
def test_sigkill_during_repair_leaves_the_run_as_it_was_or_repaired(
    out: Path, env, capsys, kill_at: str, damage: str
) -> None:
    run = _run(out) if damage == "result" else _unfinished(out)
    file = run / ("result.json" if damage == "result" else "latest.pt")
    _cut(300)(file)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    proc = _bench(["runs", "check", str(out), "--repair"], kill_at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    kept = [k for k in after if k != "run.lock" and not k.endswith(".tmp")]  # a killed write's
    assert {k: after[k] for k in kept} == {k: v for k, v in before.items() if k != "run.lock"}
    proc = _bench(["runs", "check", str(out), "--repair"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [p for p in run.rglob("*.tmp")]
    assert read_state(run).state in ("finished", "resumable") and not read_state(run).damage
    assert _train(out, env, capsys)[0] == 0
