"""`bench train` / `bench eval` end to end on real Fashion-MNIST images in idx format."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli.main import main
from bench.engine import TrainHParams
from bench.engine.distributed import free_port
from bench.runs.classify import DataOptions, train_cell
from bench.runs.records import protocol_id
from bench.ticket.schema import control_tickets, make_ticket
from bench.util.io import read_json, read_jsonl

FAST = ["--epochs", "3", "--batch-size", "32", "--lr", "0.05", "--warmup-epochs", "0",
        "--heldout", "100"]  # fmt: skip


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory) -> Path:
    from fixtures import write_fashion_mnist_idx

    return write_fashion_mnist_idx(
        tmp_path_factory.mktemp("fmnist"), train_per_class=40, test_per_class=10
    )


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "cache"))


def _ticket():
    prov = {"kind": "published", "citation": "test", "source": "test"}
    return make_ticket("r20-se-t", "resnet20", "se", [1, 0, 0, 1, 0, 1, 0, 0, 1], prov)


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "records").rglob("*.json"))]


def test_train_learns_and_writes_a_record(fmnist, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["train", "fashion-mnist", "resnet20-se", "--mask", "full", "--data-root", str(fmnist),
            "--out", str(out), *FAST]  # fmt: skip
    assert main(argv) == 0
    (rec,) = _records(out)
    run_dir = Path(rec["provenance"]["run_dir"])
    history = read_jsonl(run_dir / "metrics.jsonl")
    assert len(history) == 3
    assert history[-1]["train"]["loss"] < history[0]["train"]["loss"]
    assert rec["result"]["metric"] == "top1" and rec["result"]["value"] > 30  # chance: 10
    setting = {"task": "classification", "dataset": "fashion-mnist", "eval_split": "test",
               "select_split": "heldout", "head": "linear"}  # fmt: skip
    assert rec["setting"] == setting
    assert rec["identity"]["baseline"] == "full" and rec["identity"]["density"] == 1.0
    assert rec["cost"]["params_total"] > 0 and rec["cost"]["latency_ms"] > 0
    assert rec["protocol"]["split"]["sizes"]["heldout"] == 100
    assert rec["protocol"]["train_size"] == 300
    assert (run_dir / "result.json").is_file() and (run_dir / "best.pt").is_file()
    # --device auto (the default) resolved to this machine's device, which the run records.
    env = read_json(run_dir / "hparams.json")["environment"]
    assert env["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert str(run_dir) in capsys.readouterr().out
    # mode new skips the finished run; eval of best.pt reproduces the recorded number
    assert main(argv) == 0
    assert "finished already" in capsys.readouterr().err  # status lines go to stderr
    best = str(run_dir / "best.pt")
    argv = ["eval", "fashion-mnist", "resnet20-se", "--mask", "full", best, "--data-root",
            str(fmnist), "--heldout", "100", "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 0
    (ev,) = _records(tmp_path / "ev")
    assert ev["result"]["value"] == pytest.approx(rec["result"]["value"])


def test_kill_and_resume_gives_the_same_result(fmnist, tmp_path):
    hp = TrainHParams(epochs=3, batch_size=32, lr=0.05, warmup_epochs=0, seed=1)
    data = DataOptions(data_root=fmnist, heldout=100)
    t = _ticket()
    full = train_cell(t, "fashion-mnist", hp, out_root=tmp_path / "a", data=data)
    part = train_cell(t, "fashion-mnist", hp, out_root=tmp_path / "b", data=data,
                      stop_after_epoch=1)  # fmt: skip
    assert part["status"] == "interrupted" and part["epochs"] == 1
    resumed = train_cell(t, "fashion-mnist", hp, out_root=tmp_path / "b", data=data)
    assert resumed["result"] == full["result"]
    a = torch.load(Path(full["provenance"]["run_dir"]) / "latest.pt", weights_only=True)
    b = torch.load(Path(resumed["provenance"]["run_dir"]) / "latest.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_controls_are_one_flag_away(fmnist, tmp_path):
    t = _ticket()
    path = t.save(tmp_path / "t.json")
    out = tmp_path / "runs"
    argv = ["train", "fashion-mnist", "resnet20-se", "--ticket", str(path), "--controls",
            "--data-root", str(fmnist), "--out", str(out), *FAST, "--epochs", "1"]  # fmt: skip
    assert main(argv) == 0
    recs = {r["identity"]["ticket"]: r for r in _records(out)}
    assert len(recs) == 4
    kinds = sorted(str(r["identity"]["baseline"]) for r in recs.values())
    assert kinds == ["None", "full", "none", "random"]
    (rand,) = [r for r in recs.values() if r["identity"]["baseline"] == "random"]
    assert rand["identity"]["kept"] == t.kept and rand["identity"]["stages"] != t.stages
    assert {c.name for c in control_tickets(t, 0)} <= set(recs)
    # Ticket, controls and seeds are one protocol: the leaderboard groups them together.
    assert len({protocol_id(r["protocol"]) for r in recs.values()}) == 1
    # --arm trains one arm alone: the same run directory and result as in the whole set.
    one = tmp_path / "one"
    argv[argv.index(str(out))] = str(one)
    assert main([*argv, "--arm", "random"]) == 0
    (alone,) = _records(one)
    assert alone["identity"]["baseline"] == "random"
    assert Path(alone["provenance"]["run_dir"]).name == Path(rand["provenance"]["run_dir"]).name
    assert alone["result"] == rand["result"]


@pytest.mark.parametrize(
    "argv,words",
    [
        (["train", "fashion-mnist", "resnet20-se", "--mask", "full", "--iters", "3"], "--epochs"),
        (
            ["train", "cifar10", "resnet20-se", "--mask", "full", "--data-root", "/nonexistent"],
            "cifar10",
        ),  # fmt: skip
        (
            ["train", "fashion-mnist", "resnet20-se", "--ticket", "resnet50-sge-stage-ean"],
            "ticket is for resnet50-sge",
        ),  # fmt: skip
        (["train", "fashion-mnist", "resnet20-se", "--mask", "random:2"], "density"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, words, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
    assert not (tmp_path / "records").exists()


@pytest.mark.slow
def test_torchrun_two_gloo_processes(fmnist, tmp_path):
    out = tmp_path / "runs"
    # CUDA hidden: --device auto is then cpu and the backend gloo, on a CUDA machine too.
    env = {**os.environ, "TICKETBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", str(free_port()), "-m", "bench.cli.main", "train", "fashion-mnist",
           "resnet20-se", "--mask", "full", "--data-root", str(fmnist), "--out", str(out), *FAST,
           "--epochs", "2"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (rec,) = _records(out)
    assert rec["result"]["extras"]["world_size"] == 2
    assert rec["result"]["value"] > 20
    env = read_json(Path(rec["provenance"]["run_dir"]) / "hparams.json")["environment"]
    assert env["device"] == "cpu"


def test_init_from_loads_the_backbone_strictly_and_keeps_the_head_fresh(tmp_path):
    from bench.models.slots import build_ticket_model
    from bench.runs.pretrained import file_init, load_backbone
    from bench.util.errors import BenchError

    t = _ticket()
    torch.manual_seed(0)
    src = build_ticket_model(t, num_classes=100)
    torch.save({"model": src.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    torch.manual_seed(1)
    dst = build_ticket_model(t, num_classes=10)
    fresh_fc = dst.fc.weight.detach().clone()
    report = load_backbone(dst, file_init(tmp_path / "ckpt.pt"), t)
    mine, theirs = dst.state_dict(), src.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine if not k.startswith("fc."))
    assert torch.equal(dst.fc.weight, fresh_fc)  # the task head is not the source's
    assert report.unexpected == ("fc.weight", "fc.bias") and not report.missing
    assert len(report.loaded) == len([k for k in mine if not k.startswith("fc.")])
    other = make_ticket("o", "resnet20", "se", [1] * 9, t.provenance)
    with pytest.raises(BenchError, match="do not fit"):
        load_backbone(build_ticket_model(other, num_classes=10), file_init(tmp_path / "ckpt.pt"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError):
        load_backbone(dst, file_init(tmp_path / "bad.pt"))


def test_overriding_the_epochs_of_a_step_preset_scales_its_milestones(fmnist, tmp_path):
    from bench.engine import PRESETS

    cifar, imagenet = PRESETS.get("cifar-resnet164"), PRESETS.get("imagenet-resnet50")
    # 81/164 and 122/164 of 10 epochs are 4.94 and 7.44; of 1 epoch no integer lies in (0, 1)
    assert cifar.with_epochs(10).milestones == (5, 7)
    assert cifar.with_epochs(1).milestones == ()
    assert imagenet.with_epochs(12).milestones == (3, 6, 9)  # 30/60/90 of 120
    assert cifar.with_epochs(None) is cifar and cifar.with_epochs(164) is cifar
    # The paper preset with a 1-epoch budget trains (it used to stop on its milestones) and
    # the record says the schedule was scaled from the preset's.
    argv = ["train", "fashion-mnist", "resnet20-se", "--mask", "none", "--preset",
            "cifar-resnet164", "--epochs", "1", "--batch-size", "64", "--heldout", "100",
            "--data-root", str(fmnist), "--out", str(tmp_path / "runs")]  # fmt: skip
    assert main(argv) == 0
    (rec,) = _records(tmp_path / "runs")
    proto = rec["protocol"]
    assert proto["epochs"] == 1 and proto["hparams"]["milestones"] == []
    assert proto["schedule_scaled_from"] == {"epochs": 164, "milestones": [81, 122]}
