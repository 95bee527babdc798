"""Bad-input corpus, checkpoints and safe loading.

Checkpoints load with torch.load(weights_only=True): a file whose pickle would run code is
refused before it runs (the file it would create never appears), and every broken, foreign
or misshapen file is one line naming it. `bench eval` refuses a head that does not fit and
writes a record of its own, never over the training record of that ticket and seed.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fixtures_bad import assert_nothing_written, expect_bench_error, expect_exit_2

from bench.engine.checkpoint import load_checkpoint, save_checkpoint
from bench.models.slots import build_ticket_model
from bench.runs.pretrained import file_init, load_backbone
from bench.runs.records import make_record, record_path, write_record
from bench.ticket.schema import baseline_mask, make_ticket, model_slots

FULL = {"kind": "baseline", "baseline": "full", "seed": 0}


def _full(backbone: str = "resnet20"):
    mask = baseline_mask("full", len(model_slots(backbone)))
    return make_ticket(f"{backbone}-se-block-full", backbone, "se", mask, FULL)


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    """The state dict of resnet20-se (full mask) for 10 classes, as `bench eval` builds it."""
    torch.manual_seed(0)
    return build_ticket_model(_full(), num_classes=10).state_dict()


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "cache"))


class _Planted:
    """A pickled object whose unpickling creates the file `marker` (what an attack does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _resized(sd: dict, key: str, shape: tuple[int, ...]) -> dict:
    return {**sd, key: torch.zeros(shape)}


# Each writer makes the bad file at `path` from the good weights `sd` (resnet20-se, 10 classes).
Writer = Callable[[Path, dict], object]
CASES: list[tuple[str, Writer, tuple[str, ...]]] = [
    (
        "other-architecture",
        lambda p, sd: torch.save(
            {"model": build_ticket_model(_full("resnet32"), num_classes=10).state_dict()}, p
        ),
        ("weights do not fit",),
    ),  # fmt: skip
    (
        "head-100-classes",
        lambda p, sd: save_checkpoint(
            p, {"model": {**sd, "fc.weight": torch.zeros(100, 64), "fc.bias": torch.zeros(100)}}
        ),
        ("fc.weight has shape (100, 64)", "needs (10, 64)"),
    ),  # fmt: skip
    (
        "conv-other-width",
        lambda p, sd: torch.save(_resized(sd, "conv1.weight", (8, 3, 3, 3)), p),
        ("conv1.weight has shape (8, 3, 3, 3)",),
    ),  # fmt: skip
    (
        "missing-key",
        lambda p, sd: torch.save({k: v for k, v in sd.items() if k != "bn1.bias"}, p),
        ("lacks bn1.bias",),
    ),  # fmt: skip
    (
        "foreign-key",
        lambda p, sd: torch.save({**sd, "extra.weight": torch.zeros(1)}, p),
        ("has extra.weight",),
    ),  # fmt: skip
    (
        "not-a-tensor",
        lambda p, sd: torch.save({**sd, "conv1.weight": 3}, p),
        ("conv1.weight is a int, not a tensor",),
    ),  # fmt: skip
    ("no-weights", lambda p, sd: torch.save({"model": {}}, p), ("no weights in the file",)),
    (
        "truncated",
        lambda p, sd: (torch.save(sd, p), p.write_bytes(p.read_bytes()[:5000])),
        ("cannot read checkpoint",),
    ),  # fmt: skip
    ("empty", lambda p, sd: p.write_bytes(b""), ("cannot read checkpoint",)),
    ("text-file", lambda p, sd: p.write_text("not a checkpoint\n"), ("cannot read checkpoint",)),
    ("zeros", lambda p, sd: p.write_bytes(bytes(4096)), ("cannot read checkpoint",)),
    ("a-list", lambda p, sd: torch.save([1, 2, 3], p), ("holds a list, not a dict",)),
    ("a-tensor", lambda p, sd: torch.save(torch.zeros(3), p), ("holds a Tensor, not a dict",)),
    (
        "plain-pickle-of-a-dict",
        lambda p, sd: p.write_bytes(pickle.dumps({"a": 1})),
        ("cannot read checkpoint",),
    ),  # fmt: skip
    (
        "newer-format",
        lambda p, sd: torch.save({"format": 99, "model": sd}, p),
        ("has format 99",),
    ),  # fmt: skip
    (
        "json-file",
        lambda p, sd: p.write_text(json.dumps({"model": {}})),
        ("cannot read checkpoint",),
    ),  # fmt: skip
]


@pytest.mark.parametrize(("write", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bench_eval_refuses_a_bad_checkpoint(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fashion_mnist_gz_dir: Path,
    weights: dict,
    write: Writer,
    needles: tuple[str, ...],
) -> None:
    ckpt = tmp_path / "ckpt.pt"
    write(ckpt, weights)
    out = tmp_path / "out"
    argv = ["eval", "fashion-mnist", "resnet20-se", "--mask", "full", ckpt,
            "--data-root", fashion_mnist_gz_dir, "--out", out]  # fmt: skip
    expect_exit_2(argv, capsys, str(ckpt), *needles)
    assert_nothing_written(out)


@pytest.mark.parametrize(
    ("name", "needles"),
    [("missing.pt", ("not found",)), ("adir", ("a directory",))],
    ids=["missing-file", "a-directory"],
)
def test_bench_eval_checkpoint_path(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fashion_mnist_gz_dir: Path,
    name: str,
    needles: tuple[str, ...],
) -> None:
    (tmp_path / "adir").mkdir()
    argv = ["eval", "fashion-mnist", "resnet20-se", "--mask", "full", tmp_path / name,
            "--data-root", fashion_mnist_gz_dir, "--out", tmp_path / "out"]  # fmt: skip
    expect_exit_2(argv, capsys, name, *needles)
    assert_nothing_written(tmp_path / "out")


def test_checkpoint_of_another_ticket_or_broken_run_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fashion_mnist_gz_dir: Path, weights: dict
) -> None:
    run = tmp_path / "train_x"
    run.mkdir()
    save_checkpoint(run / "best.pt", {"model": weights})
    argv = ["eval", "fashion-mnist", "resnet20-se", "--mask", "full", run / "best.pt",
            "--data-root", fashion_mnist_gz_dir, "--out", tmp_path / "out"]  # fmt: skip
    (run / "hparams.json").write_text(json.dumps({"identity": {"ticket": "sha256:0123"}}))
    expect_exit_2(argv, capsys, "a checkpoint of ticket sha256:0123")
    (run / "hparams.json").write_text('{"identity": ')
    expect_exit_2(argv, capsys, str(run / "hparams.json"), "unreadable run metadata")
    assert_nothing_written(tmp_path / "out")


# --------------------------------------------------------------------------- safe loading


def test_a_planted_checkpoint_is_refused_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fashion_mnist_gz_dir: Path, weights: dict
) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {**weights, "conv1.weight": _Planted(marker)}}, evil)
    raw = tmp_path / "evil.pkl"  # a bare pickle, not torch's zip format
    raw.write_bytes(pickle.dumps(_Planted(marker)))
    for path, detail in ((evil, "GLOBAL io.open"), (raw, "Unsupported")):
        expect_bench_error(lambda p=path: load_checkpoint(p), str(path), "refused", detail)
        out = tmp_path / "out"
        argv = ["eval", "fashion-mnist", "resnet20-se", "--mask", "full", path,
                "--data-root", fashion_mnist_gz_dir, "--out", out]  # fmt: skip
        expect_exit_2(argv, capsys, str(path), "refused")
        net = build_ticket_model(_full(), num_classes=10)
        expect_bench_error(lambda p=path, n=net: load_backbone(n, file_init(p)), "refused")
        assert_nothing_written(out)
    assert not marker.exists()
    # The planted object really would have run: an unrestricted load creates the file.
    with open(raw, "rb") as f:
        pickle.load(f).close()
    assert marker.exists()


@pytest.mark.parametrize(
    ("writer", "needles"),
    [
        (lambda p: p.mkdir(), ("a directory; expected a checkpoint file",)),
        (lambda p: None, ("no such file",)),
        (lambda p: p.write_text("x"), ("cannot read checkpoint",)),
        (lambda p: torch.save({"model": {}}, p), ("no weights in the file",)),
    ],
    ids=["a-directory", "missing", "not-a-checkpoint", "no-weights"],
)
def test_init_from_a_bad_file(
    tmp_path: Path, writer: Callable[[Path], object], needles: tuple[str, ...]
) -> None:
    path = tmp_path / "init.pt"
    writer(path)
    net = build_ticket_model(_full(), num_classes=10)
    expect_bench_error(lambda: load_backbone(net, file_init(path)), str(path), *needles)


# --------------------------------------------------------------------------- eval records


def _training_record(out: Path, ticket, value: float) -> Path:
    """The record `bench train` writes for this ticket and seed 0 (test split, linear head)."""
    rec = make_record(
        ticket=ticket,
        task="classification",
        dataset="fashion-mnist",
        eval_split="test",
        select_split="heldout",
        head="linear",
        metric="top1",
        value=value,
        higher_is_better=True,
        seed=0,
        run_dir=out / "train_x",
    )
    return write_record(out, rec)


def test_bench_eval_writes_its_own_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fashion_mnist_gz_dir: Path, weights: dict
) -> None:
    out = tmp_path / "out"
    trained = _training_record(out, _full(), 89.98)
    before = trained.read_bytes()
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, {"model": weights})
    argv = ["eval", "fashion-mnist", "resnet20-se", "--mask", "full", ckpt,
            "--data-root", fashion_mnist_gz_dir, "--out", out]  # fmt: skip
    # A 100-class head on the 10-class dataset is refused; the training record stays.
    bad = tmp_path / "head100.pt"
    save_checkpoint(bad, {"model": {**weights, "fc.weight": torch.zeros(100, 64),
                                    "fc.bias": torch.zeros(100)}})  # fmt: skip
    expect_exit_2([*argv[:5], bad, *argv[6:]], capsys, "fc.weight has shape (100, 64)")
    assert trained.read_bytes() == before
    # A fitting checkpoint is scored into a record of its own.
    assert expect_exit_0(argv, capsys)
    files = sorted((out / "records").rglob("*.json"))
    assert len(files) == 2 and trained in files and trained.read_bytes() == before
    (evaluated,) = [p for p in files if p != trained]
    rec = json.loads(evaluated.read_text())
    assert evaluated == record_path(out, rec) and "__eval-" in evaluated.name
    assert rec["provenance"]["evaluates"] in evaluated.name
    # The same checkpoint again replaces its own record; another one gets another.
    assert expect_exit_0(argv, capsys)
    assert len(list((out / "records").rglob("*.json"))) == 2
    save_checkpoint(tmp_path / "other.pt", {"model": {**weights, "fc.bias": torch.ones(10)}})
    assert expect_exit_0([*argv[:5], tmp_path / "other.pt", *argv[6:]], capsys)
    assert len(list((out / "records").rglob("*.json"))) == 3
    assert trained.read_bytes() == before


def expect_exit_0(argv: list, capsys: pytest.CaptureFixture[str]) -> bool:
    from fixtures_bad import run_cli

    code, err = run_cli(argv, capsys)
    assert code == 0, err[-1500:]
    return True


@pytest.mark.parametrize(
    ("writer", "needles"),
    [
        (lambda p, sd: torch.save({"model": {**sd, "x": _Planted(p.parent / "PWNED")}}, p),
         ("refused", "GLOBAL io.open")),
        (lambda p, sd: (torch.save({"model": sd}, p), p.write_bytes(p.read_bytes()[:5000])),
         ("cannot read checkpoint", "truncated (5000 bytes)")),
        (lambda p, sd: torch.save({"model": _resized(sd, "conv1.weight", (16, 3, 5, 5))}, p),
         ("conv1.weight has shape (16, 3, 5, 5)",)),
    ],
    ids=["planted", "truncated", "wrong-shape"],
)  # fmt: skip
def test_bench_train_refuses_init_from_before_it_starts_or_makes_a_run_directory(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fashion_mnist_gz_dir: Path,
    weights: dict,
    writer: Callable[[Path, dict], object],
    needles: tuple[str, ...],
) -> None:
    """It used to print "starting ..." and leave hparams.json and run.lock behind."""
    path, out = tmp_path / "init.pt", tmp_path / "out"
    writer(path, weights)
    argv = ["train", "fashion-mnist", "resnet20-se", "--mask", "full", "--init-from", path,
            "--data-root", fashion_mnist_gz_dir, "--out", out, "--epochs", "1"]  # fmt: skip
    expect_exit_2(argv, capsys, str(path), *needles)
    assert not out.exists() or not list(out.iterdir()), list(out.iterdir())
    assert not (tmp_path / "PWNED").exists()
