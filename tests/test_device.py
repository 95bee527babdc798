"""Device selection (bench.engine.device): --device auto, cuda:N, torchrun's local rank, and
the process group's backend following the device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.engine.device import resolve_name, select_device
from bench.engine.distributed import free_port
from bench.util.errors import BenchError

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT")  # fmt: skip


@pytest.fixture
def single(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No torchrun variables in this process's environment."""
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_auto_is_cuda_when_available_else_cpu(single: pytest.MonkeyPatch) -> None:
    assert resolve_name("auto", cuda_available=False) == "cpu"
    assert resolve_name("auto", cuda_available=True) == "cuda:0"
    assert resolve_name("cpu", cuda_available=True) == "cpu"
    assert resolve_name("cuda", cuda_available=True) == "cuda:0"
    # Here: the device a default run gets, and what select_device hands back.
    here = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert resolve_name() == here
    if here == "cpu":
        assert select_device() == torch.device("cpu")


def test_under_torchrun_each_process_takes_its_local_gpu(single: pytest.MonkeyPatch) -> None:
    single.setenv("WORLD_SIZE", "4")
    single.setenv("LOCAL_RANK", "3")
    assert resolve_name("auto", cuda_available=True) == "cuda:3"
    assert resolve_name("cuda", cuda_available=True) == "cuda:3"
    assert resolve_name("auto", cuda_available=False) == "cpu"
    with pytest.raises(BenchError, match="all 4 processes on one GPU"):
        resolve_name("cuda:0", cuda_available=True)
    # What a command resolved and hands on (cuda:LOCAL_RANK) resolves to itself.
    single.setattr(torch.cuda, "device_count", lambda: 4)
    assert resolve_name("cuda:3", cuda_available=True) == "cuda:3"


def test_unavailable_devices_are_one_line_errors(single: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchError, match="--device cuda: this machine has no CUDA"):
        resolve_name("cuda", cuda_available=False)
    with pytest.raises(BenchError, match="expected auto, cpu, cuda or cuda:N"):
        resolve_name("tpu")
    single.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_name("cuda:1", cuda_available=True) == "cuda:1"  # honoured
    with pytest.raises(BenchError, match="has 2 CUDA device"):
        resolve_name("cuda:2", cuda_available=True)


# Run as a torchrun worker would be: the device it selects and the backend it joins with.
_WORKER = """
import json, torch.distributed as dist
from bench.engine.device import select_device
from bench.engine.distributed import barrier, destroy_distributed, init_distributed
device = select_device("auto")
info = init_distributed(device)
print(json.dumps({"device": str(device), "backend": dist.get_backend(), "rank": info.rank,
                  "world": info.world_size}))
barrier()  # neither leaves while the other still connects
destroy_distributed()
"""


def test_torchrun_environment_gets_gloo_and_the_cpu(tmp_path: Path) -> None:
    """Two processes with torchrun's variables set by hand (CUDA hidden, as on this CPU)."""
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        cmd = [sys.executable, "-c", _WORKER]
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert got == [{"device": "cpu", "backend": "gloo", "rank": r, "world": 2} for r in (0, 1)]


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory) -> Path:
    from fixtures import write_fashion_mnist_idx

    return write_fashion_mnist_idx(
        tmp_path_factory.mktemp("fmnist"), train_per_class=12, test_per_class=4
    )


@pytest.mark.slow  # two tiny training runs, with their cost records
def test_deterministic_flag_is_recorded_and_changes_nothing_on_cpu(
    fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.cli.main import main
    from bench.engine.device import set_deterministic
    from bench.util.io import read_json

    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU's promise
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # restored afterwards
    argv = ["train", "fashion-mnist", "resnet20-se", "--mask", "random:0.5", "--data-root",
            str(fmnist), "--epochs", "1", "--batch-size", "16", "--heldout", "20"]  # fmt: skip
    runs = {}
    try:
        for flag in ([], ["--deterministic"]):
            out = tmp_path / ("det" if flag else "plain")
            assert main([*argv, "--out", str(out), *flag]) == 0
            (path,) = (out / "records").rglob("*.json")
            rec = read_json(path)
            run_dir = Path(rec["provenance"]["run_dir"])
            env = read_json(run_dir / "hparams.json")["environment"]
            runs[bool(flag)] = rec, env, torch.load(run_dir / "latest.pt")["model"]
    finally:
        set_deterministic(False)
    (plain, env0, w0), (det, env1, w1) = runs[False], runs[True]
    assert env1["deterministic"] and env1["cudnn_deterministic"] and not env1["cudnn_benchmark"]
    assert env1["cublas_workspace"] == ":4096:8" and not env0["deterministic"]
    assert env0["device"] == env1["device"] == "cpu"
    assert det["result"]["value"] == plain["result"]["value"]
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert Path(plain["provenance"]["run_dir"]).name == Path(det["provenance"]["run_dir"]).name
