"""`bench transfer --pretrained DATASET`: every arm starts from its own `bench train` run.

The arms (ticket, full, none) are pretrained with the real `bench train` on Fashion-MNIST
idx files, then transferred to crowd counting on the ShanghaiTech-format sample; each
record must name a different checkpoint, the one its arm's pretraining run selected.
"""

import json
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.runs.records import protocol_id
from bench.ticket.schema import make_ticket
from bench.util.fingerprint import file_sha256

TRAIN = ["--epochs", "1", "--batch-size", "32", "--lr", "0.05", "--warmup-epochs", "0",
         "--heldout", "40", "--preset", "short"]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from fixtures import write_fashion_mnist_idx

    from tasks.crowd_counting.sample import write_sample

    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist_idx(root / "fashion-mnist", train_per_class=12, test_per_class=2)
    write_sample(root, parts=("B",))
    return root


@pytest.fixture
def ticket_file(tmp_path) -> Path:
    prov = {"kind": "published", "citation": "test", "source": "test"}
    ticket = make_ticket("r20-se-t", "resnet20", "se", [1, 0, 0, 1, 0, 1, 0, 0, 1], prov)
    return ticket.save(tmp_path / "t.json")


def _transfer(ticket_file: Path, data_root: Path, out: Path, *extra: str) -> int:
    argv = ["transfer", "--ticket", str(ticket_file), "--task", "crowd_counting", "--dataset",
            "shanghaitech-b", "--data-root", str(data_root), "--out", str(out), "--iters", "2",
            *extra]  # fmt: skip
    return main(argv)


@pytest.mark.slow
def test_each_arm_transfers_from_its_own_pretraining(
    data_root, ticket_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs"
    # Only the ticket and full are pretrained: the none arm's absence stops the transfer.
    train = ["train", "fashion-mnist", "resnet20-se", "--ticket", str(ticket_file),
             "--data-root", str(data_root), "--out", str(out), *TRAIN]  # fmt: skip
    assert main([*train, "--controls", "full"]) == 0
    capsys.readouterr()
    assert _transfer(ticket_file, data_root, out, "--pretrained", "fashion-mnist") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none arm" in err[0]
    command = err[0].split("make it with: ")[1]
    assert command.startswith(f"bench train fashion-mnist resnet20-se --ticket {ticket_file} ")
    assert "--controls full,none --seeds 0 --preset short" in command
    assert not (out / "records" / "crowd_counting").exists()  # nothing ran

    assert main([*train, "--controls", "none"]) == 0
    assert _transfer(ticket_file, data_root, out, "--pretrained", "fashion-mnist") == 0
    records = [
        json.loads(p.read_text()) for p in (out / "records" / "crowd_counting").rglob("*.json")
    ]
    assert len(records) == 3
    pretrain = {
        json.loads(p.read_text())["identity"]["ticket_checksum"]: p
        for p in (out / "records" / "classification").rglob("*.json")
    }
    paths = set()
    for rec in records:
        init = rec["result"]["extras"]["init"]
        ident = rec["identity"]
        # The arm's own run: found by its ticket checksum, and its selected weights.
        source = json.loads(pretrain[ident["ticket_checksum"]].read_text())
        assert init["kind"] == "pretrained"
        assert init["path"] == str(Path(source["provenance"]["run_dir"]).resolve() / "best.pt")
        assert init["checksum"] == file_sha256(init["path"], 16)
        assert init["keys"]["missing"] == [] and init["keys"]["unexpected"] == [
            "fc.weight",
            "fc.bias",
        ]
        assert rec["protocol"]["init"] == {
            "kind": "pretrained",
            "dataset": "fashion-mnist",
            "preset": "short",
            "protocol_id": protocol_id(source["protocol"]),
        }
        paths.add(init["path"])
    assert len(paths) == 3  # three different checkpoints, one per arm
    assert len({protocol_id(r["protocol"]) for r in records}) == 1  # one comparable cell

    # One external file may not start arms with different masks.
    ext = tmp_path / "ext.pt"
    ext.write_bytes(Path(next(iter(paths))).read_bytes())
    assert _transfer(ticket_file, data_root, out, "--init-from", str(ext)) == 2
    assert "different masks" in capsys.readouterr().err


def test_transfer_needs_to_know_where_arms_start(data_root, ticket_file, tmp_path, capsys):
    # A published CIFAR-backbone ticket names no source dataset: the user must choose.
    assert _transfer(ticket_file, data_root, tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pretrained none" in err


@pytest.mark.slow
def test_a_failed_run_exits_1_and_a_later_success_replaces_its_record(
    ticket_file, tmp_path, capsys, monkeypatch
):
    from tasks.crowd_counting.sample import write_sample

    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "cache"))
    root = write_sample(tmp_path / "data", parts=("B",))
    gt = root / "part_B" / "test_data" / "images" / "IMG_1.jpg"
    good = gt.read_bytes()
    # The header still reads (the checks before training pass), the pixels do not: the run
    # fails when it meets them, and its record is kept.
    gt.write_bytes(good[: len(good) // 2])
    out = tmp_path / "runs"
    args = ("--pretrained", "none", "--no-controls")
    assert _transfer(ticket_file, root, out, *args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "bench: 1 of 1 runs failed (their records say why)"
    folder = out / "records" / "crowd_counting" / "shanghaitech-b"
    (failed,) = folder.glob("*.json")
    assert json.loads(failed.read_text())["provenance"]["status"] == "failed"
    assert failed.with_suffix(".traceback.txt").is_file()

    gt.write_bytes(good)
    assert _transfer(ticket_file, root, out, *args) == 0
    (rec,) = folder.glob("*.json")  # the failure is answered, not kept beside the result
    assert json.loads(rec.read_text())["provenance"]["status"] == "finished"
    assert not list(folder.glob("*.traceback.txt"))
