"""`bench transfer --task all` and `bench leaderboard` through the CLI, on real adapters.

One data root holds every embedded-default format (Fashion-MNIST idx files, the
ShanghaiTech-format and Cityscapes-layout samples); the ticket runs beside its full and
none controls, absent datasets are skipped with their reason, and the leaderboard
collects what ran.
"""

import csv
import json
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.runs.records import protocol_id
from bench.ticket.schema import make_ticket


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from fixtures import write_fashion_mnist_idx

    from tasks.crowd_counting.sample import write_sample
    from tasks.segmentation.sample import write_cityscapes_sample

    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist_idx(root / "fashion-mnist", train_per_class=20, test_per_class=4)
    write_sample(root, parts=("B",))
    write_cityscapes_sample(root / "cityscapes")
    return root


@pytest.mark.slow
def test_transfer_all_then_leaderboard(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "cache"))
    prov = {"kind": "published", "citation": "test", "source": "test"}
    ticket = make_ticket("r20-se-t", "resnet20", "se", [1, 0, 0, 1, 0, 1, 0, 0, 1], prov)
    path = ticket.save(tmp_path / "t.json")
    out = tmp_path / "runs"
    argv = [
        "transfer",
        "--ticket",
        str(path),
        "--task",
        "all",
        "--data-root",
        str(data_root),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--iters",
        "2",
        "--heldout",
        "40",
        "--opt",
        "segmentation.decoder=fcn",
        "--pretrained",
        "none",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    records = [json.loads(p.read_text()) for p in (out / "records").rglob("*.json")]
    cells = {
        (r["setting"]["task"], r["setting"]["dataset"], r["identity"]["ticket"]) for r in records
    }
    for task, dataset in [("classification", "fashion-mnist"), ("crowd_counting",
                          "shanghaitech-b"), ("segmentation", "cityscapes")]:  # fmt: skip
        names = {c[2] for c in cells if c[:2] == (task, dataset)}
        assert len(names) == 3, (task, dataset, names)  # the ticket, full and none
    # A ticket and its controls share one protocol per cell, or no score could be formed.
    for task in ("classification", "crowd_counting", "segmentation"):
        protocols = {protocol_id(r["protocol"]) for r in records if r["setting"]["task"] == task}
        assert len(protocols) == 1, task
    assert all(r["provenance"]["status"] == "finished" for r in records), [
        r["provenance"]["reason"] for r in records
    ]
    # From scratch, and every record says so.
    assert all(r["protocol"]["init"] == {"kind": "scratch"} for r in records)
    # Absent datasets are skipped, each with the line that says what was expected where.
    assert "shanghaitech-a" in captured.out and "cifar10" in captured.out
    assert "mIoU" in captured.out and "mae" in captured.out
    seg = next(r for r in records if r["setting"]["task"] == "segmentation")
    assert seg["setting"]["head"].startswith("fcn") or "fcn" in json.dumps(seg["protocol"])

    assert main(["leaderboard", "--out", str(out), "--format", "md"]) == 0
    table = capsys.readouterr().out
    assert "r20-se-t" in table and "|" in table
    with open(out / "leaderboards" / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["task"] for r in rows} == {"classification", "crowd_counting", "segmentation"}
    # One seed: the difference vs full is a number without an interval; the share of gain
    # cannot judge seed noise. Both say so.
    mine = [r for r in rows if r["ticket"] == "r20-se-t"]
    assert mine and all(r["vs_full_rel"] not in ("", "nan") for r in mine)
    assert all(r["vs_full_rel_lo"] == "" and r["vs_full_n"] == "1" for r in mine)
    assert all(r["vs_full_reason"].startswith("1 shared seed (0): no interval") for r in mine)
    assert all(r["verdict_accuracy"] == "undecided" for r in mine)
    assert all(r["gain_share"] == "nan" for r in mine)
    assert all("seed noise cannot be judged" in r["gain_share_reason"] for r in mine)


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--task", "segmentation", "--epochs", "2"], "use --iters"),
        (["--task", "classification", "--iters", "2"], "use --epochs"),
        (["--task", "crowd_counting", "--dataset", "cityscapes"], "shanghaitech-a"),
        (["--task", "all", "--opt", "crop=3"], "TASK.crop"),
        (["--task", "nope"], "unknown task"),
    ],
)
def test_transfer_bad_flags(argv, words, tmp_path, capsys):
    base = ["transfer", "--ticket", "resnet50-sge-stage-ean", "--out", str(tmp_path)]
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


def test_transfer_of_one_task_without_its_data_is_exit_2(tmp_path, capsys):
    argv = [
        "transfer",
        "--ticket",
        "resnet50-sge-stage-ean",
        "--task",
        "crowd_counting",
        "--dataset",
        "shanghaitech-b",
        "--data-root",
        str(tmp_path),
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("bench: error: shanghaitech-b:") and "part_B" in last
    assert not (tmp_path / "records").exists()
