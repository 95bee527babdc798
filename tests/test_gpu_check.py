"""`make gpu-check` (scripts/gpu_check.sh): on a machine without CUDA it exits 2 with one
line; its report is one JSON and one Markdown file that say which step failed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _helper():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_exits_2_with_one_line(tmp_path: Path) -> None:
    # CUDA hidden: the same answer on a machine that has a GPU.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "GPU_CHECK_OUT": str(tmp_path / "out")}
    env.pop("GPU_CHECK_DEVICE", None)
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("gpu-check: no CUDA device here")
    assert not (tmp_path / "out").exists()  # nothing written


def test_report_names_the_failed_steps(tmp_path: Path) -> None:
    check = _helper()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "good.log").write_text("noise\nweights bit-equal; metrics equal\n")
    (tmp_path / "logs" / "slow.log").write_text("epoch 1/2 ...\n")
    assert check.step(str(tmp_path), "good", "0", "1500")
    assert check.step(str(tmp_path), "slow", "124", "60000")
    assert not check.report(str(tmp_path))
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["ok"] is False and data["failed"] == ["slow"]
    good, slow = data["steps"]
    assert good == {"step": "good", "status": "ok", "rc": 0, "seconds": 1.5,
                    "detail": "weights bit-equal; metrics equal"}  # fmt: skip
    assert slow["status"] == "failed" and slow["detail"].startswith("timed out (exit 124)")
    md = (tmp_path / "report.md").read_text()
    assert "FAILED: slow" in md and "| good | ok | 1.5 |" in md


def test_same_tells_bit_equal_runs_from_others(tmp_path: Path, capsys) -> None:
    import torch

    check = _helper()
    w = {"conv.weight": torch.randn(4, 3), "bn.num_batches_tracked": torch.tensor(7)}
    for name, delta in (("a", 0.0), ("b", 0.0), ("c", 1e-6)):
        run = tmp_path / name / "train_0123"
        run.mkdir(parents=True)
        state = {k: v + delta if v.is_floating_point() else v for k, v in w.items()}
        torch.save({"model": state, "epoch": 2}, run / "latest.pt")
        (run / "metrics.jsonl").write_text('{"epoch": 1, "time_s": %s}\n' % (1 + ord(name)))
    assert check.same(str(tmp_path / "a"), str(tmp_path / "b"))  # times may differ
    assert "bit-equal; metrics equal" in capsys.readouterr().out
    assert not check.same(str(tmp_path / "a"), str(tmp_path / "c"))
    assert "differ by up to" in capsys.readouterr().out
