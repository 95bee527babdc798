"""Bring your own SAM: a module outside the suite registers one, and every command takes it
(`bench --import MODULE`, or an installed entry point in the group `ticketbench.sams`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.models.sams import SAMS

# The README's example, as a user would write it.
MY_SAMS = '''
from torch import nn

from bench.models.sams import SAMS


class Gate(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1),
                                nn.ReLU(), nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(x)


@SAMS.register("gate")
def gate(channels: int, *, rd_ratio: float = 0.25) -> nn.Module:
    """Channel gate: pool, 1x1 bottleneck, sigmoid (mine)."""
    return Gate(channels, max(1, round(channels * rd_ratio)))
'''


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_sams.py").write_text(MY_SAMS)
    return folder


@pytest.fixture
def scoped_sams(monkeypatch):
    """Registrations made by a test go into a copy of the SAM registry, dropped afterwards."""
    monkeypatch.setattr(SAMS, "_entries", dict(SAMS._entries))
    yield
    for name in ("my_sams", "my_sams_ep"):
        sys.modules.pop(name, None)


def _bench(*argv: str, cwd: Path) -> tuple[int, str, str]:
    import subprocess

    script = Path(sys.executable).parent / "bench"  # the console script, as a user runs it
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "bench.cli.main"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def test_bench_import_makes_a_ticket_with_my_sam(plugin_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    argv = ["ticket", "make", "resnet20-gate", "--mask", "random:0.5", "-o", str(out)]
    rc, stdout, stderr = _bench("--import", "my_sams", *argv, cwd=plugin_dir)
    assert rc == 0, stderr
    ticket = json.loads(out.read_text())
    assert (ticket["sam"], ticket["sam_args"]) == ("gate", {"rd_ratio": 0.25})
    # Without the plugin the name is unknown, and the error says how to bring it.
    rc, _, stderr = _bench(*argv, cwd=plugin_dir)
    assert rc == 2 and "unknown SAM 'gate'" in stderr and "--import" in stderr


def _make(plugin: list[str], tmp_path: Path) -> Path:
    ticket = tmp_path / "gate.json"
    make = ["ticket", "make", "resnet20-gate", "--mask", "full", "-o", str(ticket)]
    assert main([*plugin, *make]) == 0
    return ticket


def test_my_sam_in_list_show_and_search(
    plugin_dir: Path, tmp_path: Path, fashion_mnist_gz_dir: Path, scoped_sams, capsys
) -> None:
    plugin = ["--import", str(plugin_dir / "my_sams.py")]  # a file path works too
    assert main([*plugin, "list", "sams", "gate"]) == 0
    assert "Channel gate: pool, 1x1 bottleneck, sigmoid (mine).  [rd_ratio=0.25]" in (
        capsys.readouterr().out
    )
    assert main([*plugin, "list", "models", "resnet20-g*"]) == 0
    assert "resnet20-gate" in capsys.readouterr().out.split()
    ticket = _make(plugin, tmp_path)
    assert main([*plugin, "ticket", "show", str(ticket), "--no-latency"]) == 0
    # A gate on C channels: 2 * C * C/4 weights + C/4 + C biases; resnet20: 3 blocks of 16,
    # 32 and 64 channels -> 3 * (148 + 552 + 2,128) = 8,484 SAM parameters in the full ticket.
    gate_params = sum(3 * (2 * c * (c // 4) + c // 4 + c) for c in (16, 32, 64))
    assert gate_params == 8_484 and "8.5K" in capsys.readouterr().out
    searched = tmp_path / "searched.json"
    search = ["search", "fashion-mnist", "resnet20-gate", "--strategy", "random", "--budget", "2",
              "--eval-subset", "10", "--supernet-train-size", "30", "--save-ticket", str(searched),
              "--data-root", str(fashion_mnist_gz_dir), "--heldout", "10", "--epochs", "1",
              "--out", str(tmp_path / "search")]  # fmt: skip
    assert main([*plugin, *search]) == 0
    assert json.loads(searched.read_text())["sam"] == "gate"


@pytest.mark.slow
def test_my_sam_trains_and_transfers(
    plugin_dir: Path, tmp_path: Path, fashion_mnist_gz_dir: Path, scoped_sams
) -> None:
    plugin = ["--import", "my_sams"]
    sys.path.insert(0, str(plugin_dir))
    try:
        ticket = _make(plugin, tmp_path)
        data = ["--data-root", str(fashion_mnist_gz_dir), "--heldout", "10", "--epochs", "1"]
        train = ["train", "fashion-mnist", "resnet20-gate", "--ticket", str(ticket),
                 "--batch-size", "16", "--warmup-epochs", "0"]  # fmt: skip
        assert main([*plugin, *train, *data, "--out", str(tmp_path / "train")]) == 0
        transfer = ["transfer", "--ticket", str(ticket), "--task", "classification",
                    "--pretrained", "none", "--no-controls"]  # fmt: skip
        assert main([*plugin, *transfer, *data, "--out", str(tmp_path / "transfer")]) == 0
    finally:
        sys.path.remove(str(plugin_dir))
    for kind in ("train", "transfer"):
        (record,) = (tmp_path / kind / "records").rglob("*.json")
        rec = json.loads(record.read_text())
        assert rec["identity"]["ticket"] == "resnet20-gate-block-full", rec["identity"]
        assert rec["provenance"]["status"] == "finished"


def test_an_installed_entry_point_registers_its_sam(tmp_path: Path, scoped_sams, capsys,
                                                    monkeypatch) -> None:  # fmt: skip
    site = tmp_path / "site"
    dist = site / "my_sams_ep-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-sams-ep\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ticketbench.sams]\ngate2 = my_sams_ep:gate\n")
    # The factory is not registered by its module: the entry point's name registers it.
    (site / "my_sams_ep.py").write_text(MY_SAMS.replace('@SAMS.register("gate")\n', ""))
    monkeypatch.syspath_prepend(str(site))
    assert main(["list", "sams", "gate*"]) == 0
    assert capsys.readouterr().out.startswith("gate2    Channel gate")
    assert main(["ticket", "make", "resnet20-gate2", "--mask", "none", "-o",
                 str(tmp_path / "t.json")]) == 0  # fmt: skip
