"""Bad-input corpus, data: every missing, empty, foreign or damaged dataset file is one line
naming it (exit 2 from the CLI) before training; a file that only breaks when decoded
mid-training fails the run with a failed record naming it, never a traceback.

Each case damages a copy of a real-format fixture (tests/conftest.py) in one way.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fixtures_bad import assert_nothing_written, expect_bench_error, expect_exit_2, run_cli
from PIL import Image
from scipy.io import savemat

from bench.data.datasets import load_splits
from bench.data.imagefolder import load_image
from bench.engine.state import read_state
from bench.ticket.schema import baseline_mask, make_ticket, model_slots
from tasks.crowd_counting.data import find_part, list_split
from tasks.segmentation.data import LABEL_ID_SUFFIX, TRAIN_ID_SUFFIX, cityscapes_missing


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "cache"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("this is not what the file should be\n")


def _pickle(obj: object) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(pickle.dumps(obj, protocol=2))


class _Planted:
    """Unpickling this creates the file `marker` (what a planted dataset file does)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# --------------------------------------------------------------------------- CIFAR

CIFAR10 = "cifar-10-batches-py"


def _batch(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # our own fixture: trusted


def _edit_batch(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        entry = _batch(path)
        change(entry)
        path.write_bytes(pickle.dumps(entry, protocol=2))

    return edit


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda d: d.__setitem__(key, value)


CIFAR_CASES: list[tuple[str, str, Callable[[Path], None], tuple[str, ...]]] = [
    ("truncated-batch", "data_batch_3", _truncate, ("data_batch_3 is unreadable",)),
    ("empty-batch", "data_batch_1", _empty, ("data_batch_1 is unreadable", "EOFError")),
    ("text-batch", "test_batch", _text, ("test_batch is unreadable",)),
    ("batch-is-a-list", "data_batch_2", _pickle([1, 2]), ("not a CIFAR batch dictionary",)),
    ("batch-no-data", "data_batch_2", _pickle({"labels": []}), ("not a CIFAR batch",)),
    (
        "batch-wrong-row-size",
        "data_batch_1",
        _edit_batch(lambda d: d.__setitem__("data", d["data"][:, :100])),
        ("N x 3072 uint8",),
    ),  # fmt: skip
    (
        "batch-float-data",
        "data_batch_1",
        _edit_batch(lambda d: d.__setitem__("data", d["data"].astype(np.float32))),
        ("N x 3072 uint8",),
    ),  # fmt: skip
    (
        "batch-label-count",
        "data_batch_1",
        _edit_batch(lambda d: d["labels"].pop()),
        ("images but", "labels"),
    ),  # fmt: skip
    (
        "batch-string-labels",
        "data_batch_4",
        _edit_batch(lambda d: d.__setitem__("labels", [str(x) for x in d["labels"]])),
        ("non-integers",),
    ),  # fmt: skip
    (
        "batch-label-out-of-range",
        "data_batch_5",
        _edit_batch(lambda d: d.__setitem__("labels", [10] * len(d["labels"]))),
        ("inconsistent", "want 10 classes"),
    ),  # fmt: skip
    ("meta-truncated", "batches.meta", _truncate, ("batches.meta is unreadable",)),
    ("meta-no-names", "batches.meta", _pickle({"num_vis": 3072}), ("not a CIFAR meta",)),
    (
        "meta-nine-names",
        "batches.meta",
        _edit_batch(lambda d: d["label_names"].pop()),
        ("inconsistent", "9 class names"),
    ),  # fmt: skip
    (
        "meta-numpy-object",
        "batches.meta",
        _pickle(np.zeros(3, dtype=object)),
        ("not a CIFAR batch dictionary",),
    ),  # fmt: skip
    ("batch-with-a-set", "data_batch_1", _pickle({"data": {1, 2}}), ("refused global",)),
    ("missing-batch", "data_batch_5", lambda p: p.unlink(), ("missing data_batch_5",)),
]


@pytest.mark.parametrize(
    ("name", "damage", "needles"),
    [c[1:] for c in CIFAR_CASES],
    ids=[c[0] for c in CIFAR_CASES],
)
def test_bad_cifar_file(
    tmp_path: Path,
    cifar10_root: Path,
    name: str,
    damage: Callable[[Path], None],
    needles: tuple[str, ...],
) -> None:
    root = _copy(cifar10_root, tmp_path / "c10")
    damage(root / CIFAR10 / name)
    expect_bench_error(lambda: load_splits("cifar10", root), "cifar10", *needles)


@pytest.mark.parametrize("name", ["data_batch_1", "test_batch", "batches.meta"])
def test_a_planted_cifar_file_is_refused_and_runs_nothing(
    tmp_path: Path, cifar10_root: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    root = _copy(cifar10_root, tmp_path / "c10")
    marker = tmp_path / "PWNED"
    bad = root / CIFAR10 / name
    entry = _batch(bad)
    entry["batch_label"] = _Planted(str(marker))  # a real batch with one planted value
    bad.write_bytes(pickle.dumps(entry, protocol=2))
    expect_bench_error(lambda: load_splits("cifar10", root), str(bad), "refused global")
    out = tmp_path / "out"
    argv = ["train", "cifar10", "resnet20-se", "--mask", "full", "--data-root", root,
            "--out", out, "--epochs", "1"]  # fmt: skip
    expect_exit_2(argv, capsys, str(bad), "refused global io.open")
    assert not marker.exists()
    assert_nothing_written(out)
    with open(bad, "rb") as f:  # the planted value really runs under an unrestricted load
        pickle.load(f, encoding="latin1")
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_re_pickled_cifar_copies_still_load(
    tmp_path: Path, cifar100_root: Path, protocol: int
) -> None:
    root = _copy(cifar100_root, tmp_path / "c100")
    folder = root / "cifar-100-python"
    for name in ("train", "test", "meta"):
        entry = _batch(folder / name)
        if "fine_labels" in entry:  # numpy labels, as a re-pickling script may leave them
            entry["fine_labels"] = np.asarray(entry["fine_labels"], dtype=np.int64)
        (folder / name).write_bytes(pickle.dumps(entry, protocol=protocol))
    reference = load_splits("cifar100", cifar100_root, heldout=6)
    splits = load_splits("cifar100", root, heldout=6)
    assert splits.classes == reference.classes and len(splits.train) == len(reference.train)
    np.testing.assert_array_equal(splits.train.targets, reference.train.targets)
    np.testing.assert_array_equal(splits.test.base.data, reference.test.base.data)


# --------------------------------------------------------------------------- ImageNet


def _first_jpeg(root: Path, split: str = "train") -> Path:
    return sorted((root / split).glob("*/*.JPEG"))[0]


def _noise(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


IMAGENET_DECODE_CASES = [
    ("corrupt-jpeg", _noise, ("cannot identify image file",)),
    ("truncated-jpeg", lambda p: _truncate(p, 0.6), ("truncated",)),
    ("empty-jpeg", _empty, ("cannot identify image file",)),
    ("text-as-jpeg", _text, ("cannot identify image file",)),
]


@pytest.mark.parametrize(
    ("damage", "needles"),
    [c[1:] for c in IMAGENET_DECODE_CASES],
    ids=[c[0] for c in IMAGENET_DECODE_CASES],
)
def test_a_broken_jpeg_in_a_class_folder_is_named(
    tmp_path: Path, imagenet_root: Path, damage: Callable[[Path], None], needles: tuple[str, ...]
) -> None:
    root = _copy(imagenet_root, tmp_path / "in")
    bad = _first_jpeg(root)
    damage(bad)
    splits = load_splits("imagenet", root)  # the scan does not decode (1.28M files)
    expect_bench_error(lambda: load_image(str(bad)), str(bad), "unreadable image", *needles)
    index = [Path(p) for p, _ in splits.train.base.samples].index(bad)
    expect_bench_error(lambda: splits.train.base[index], str(bad), *needles)


def _failed_run(argv: list, out: Path, bad: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    """Run `bench ARGV`: exit 1 without a traceback, one failed record naming `bad`; its
    provenance."""
    code, err = run_cli(argv, capsys)
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1] == "bench: 1 of 1 runs failed (their records say why)"
    (record,) = (out / "records").rglob("*.json")
    prov = json.loads(record.read_text())["provenance"]
    assert prov["status"] == "failed" and str(bad) in prov["reason"]
    return prov


def test_a_broken_jpeg_met_mid_training_is_one_line_through_a_worker(
    tmp_path: Path, imagenet_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench train` used to end in PIL's traceback; in a DataLoader worker the error comes
    back wrapped in the worker's traceback. Now the run fails with a record naming the file
    and the command exits 1 saying so, in one line."""
    root = _copy(imagenet_root, tmp_path / "in")
    bad = _first_jpeg(root)
    _truncate(bad, 0.6)
    out = tmp_path / "out"
    argv = ["train", "imagenet", "resnet18-se", "--mask", "none", "--data-root", root,
            "--out", out, "--preset", "short", "--epochs", "1", "--image-size", "32",
            "--batch-size", "8", "--num-workers", "1"]  # fmt: skip
    prov = _failed_run(argv, out, bad, capsys)
    assert "unreadable image" in prov["reason"] and "truncated" in prov["reason"]


@pytest.mark.slow
def test_a_broken_jpeg_in_val_fails_the_run_alike_and_the_rerun_resumes(
    tmp_path: Path, imagenet_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A val/ image is read only when the trained run is scored: it used to exit 2 in three
    lines with no record. Now the run fails as for a train/ image, checkpoints kept, and
    the rerun after the fix scores it without training again."""
    root = _copy(imagenet_root, tmp_path / "in")
    bad = _first_jpeg(root, "val")
    good = bad.read_bytes()
    _truncate(bad, 0.6)
    out = tmp_path / "out"
    argv = ["train", "imagenet", "resnet18-se", "--mask", "none", "--data-root", root,
            "--out", out, "--preset", "short", "--epochs", "1", "--image-size", "32",
            "--batch-size", "8"]  # fmt: skip
    prov = _failed_run(argv, out, bad, capsys)
    assert (Path(prov["run_dir"]) / "latest.pt").is_file()
    state = read_state(Path(prov["run_dir"]))  # what `bench runs check` tells of it
    assert state.state == "failed" and str(bad) in state.reason and state.epoch == 1
    bad.write_bytes(good)
    code, err = run_cli(argv, capsys)
    assert code == 0 and "at epoch 1/1" in err and "epoch 1/1 step" not in err, err[-2000:]
    (record,) = (out / "records").rglob("*.json")
    assert json.loads(record.read_text())["provenance"]["status"] == "finished"


IMAGENET_LAYOUT_CASES: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("no-val-folder", lambda r: shutil.rmtree(r / "val"), ("no folder", "val")),
    (
        "empty-train",
        lambda r: [shutil.rmtree(d) for d in (r / "train").iterdir()],
        ("train", "class folder"),
    ),  # fmt: skip
    (
        "class-without-images",
        lambda r: [p.unlink() for p in (r / "val").glob("*/*")],
        ("val", "expected class-folder trees"),
    ),  # fmt: skip
    (
        "classes-differ",
        lambda r: next((r / "val").iterdir()).rename(r / "val" / "n99999999"),
        ("class folders differ", "n99999999"),
    ),  # fmt: skip
    (
        "flat-val",
        lambda r: (
            [p.rename(r / "val" / p.name) for p in (r / "val").glob("*/*")]
            and [d.rmdir() for d in (r / "val").iterdir() if d.is_dir()]
        ),
        ("holds images directly",),
    ),  # fmt: skip
    (
        "train-is-a-file",
        lambda r: (shutil.rmtree(r / "train"), (r / "train").write_text("x")),
        ("no folder", "train"),
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    ("damage", "needles"),
    [c[1:] for c in IMAGENET_LAYOUT_CASES],
    ids=[c[0] for c in IMAGENET_LAYOUT_CASES],
)
def test_bad_imagenet_layout(
    tmp_path: Path, imagenet_root: Path, damage: Callable[[Path], None], needles: tuple[str, ...]
) -> None:
    root = _copy(imagenet_root, tmp_path / "in")
    damage(root)
    expect_bench_error(lambda: load_splits("imagenet", root), "imagenet", *needles)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet", "fashion-mnist"])
def test_missing_data_root(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    root = tmp_path / "nowhere"
    out = tmp_path / "out"
    argv = ["train", name, "resnet20-se", "--mask", "full", "--data-root", root, "--out", out]
    expect_exit_2(argv, capsys, name, str(root), "--data-root")
    assert_nothing_written(out)


def test_fashion_mnist_damaged(
    tmp_path: Path, fashion_mnist_gz_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(fashion_mnist_gz_dir, tmp_path / "fm")
    bad = root / "train-images-idx3-ubyte.gz"
    _truncate(bad, 0.3)
    argv = ["train", "fashion-mnist", "resnet20-se", "--mask", "full", "--data-root", root,
            "--out", tmp_path / "out"]  # fmt: skip
    expect_exit_2(argv, capsys, str(bad), "gzip")
    _text(bad)
    expect_exit_2(argv, capsys, str(bad), "gzip")
    assert_nothing_written(tmp_path / "out")


# --------------------------------------------------------------------------- crowd counting


def _mat(points: object, key: str = "image_info") -> Callable[[Path], None]:
    return lambda path: savemat(path, {key: points})


def _gt(root: Path, n: int = 3) -> Path:
    return root / "part_B" / "train_data" / "ground_truth" / f"GT_IMG_{n}.mat"


def _img(root: Path, n: int = 3) -> Path:
    return root / "part_B" / "train_data" / "images" / f"IMG_{n}.jpg"


CROWD_CASES: list[tuple[str, Callable[[Path], object], tuple[str, ...]]] = [
    (
        "mat-without-image-info",
        lambda r: _mat(np.ones((2, 2)), "annPoints")(_gt(r)),
        ("GT_IMG_3.mat", "no 'image_info' variable"),
    ),  # fmt: skip
    (
        "mat-points-n-by-3",
        lambda r: _mat(np.ones((4, 3)))(_gt(r)),
        ("GT_IMG_3.mat", "unexpected layout"),
    ),  # fmt: skip
    ("mat-truncated", lambda r: _truncate(_gt(r)), ("GT_IMG_3.mat", "not a readable .mat")),
    ("mat-empty", lambda r: _empty(_gt(r)), ("GT_IMG_3.mat", "not a readable .mat")),
    ("mat-is-text", lambda r: _text(_gt(r)), ("GT_IMG_3.mat", "not a readable .mat")),
    ("mat-string-info", lambda r: _mat("heads")(_gt(r)), ("GT_IMG_3.mat",)),
    (
        "mat-nan-point",
        lambda r: __import__("fixtures_crowd").write_points(_gt(r), np.array([[1.0, np.nan]])),
        ("GT_IMG_3.mat", "non-finite"),
    ),  # fmt: skip
    ("image-without-annotation", lambda r: _gt(r).unlink(), ("IMG_3.jpg", "no annotation")),
    ("no-ground-truth-folder", lambda r: shutil.rmtree(_gt(r).parent), ("ground_truth",)),
    ("no-images", lambda r: [p.unlink() for p in _img(r).parent.iterdir()], ("no images",)),
    ("images-folder-missing", lambda r: shutil.rmtree(_img(r).parent), ("folder not found",)),
    ("corrupt-jpeg", lambda r: _noise(_img(r)), ("IMG_3.jpg", "unreadable image")),
    ("empty-jpeg", lambda r: _empty(_img(r)), ("IMG_3.jpg", "unreadable image")),
    ("missing-root", lambda r: shutil.rmtree(r), ("part_B", "expected")),
]


@pytest.mark.parametrize(
    ("damage", "needles"), [c[1:] for c in CROWD_CASES], ids=[c[0] for c in CROWD_CASES]
)
def test_bad_crowd_data(
    tmp_path: Path, crowd_root: Path, damage: Callable[[Path], object], needles: tuple[str, ...]
) -> None:
    root = _copy(crowd_root, tmp_path / "sh")
    damage(root)

    def read() -> None:
        part = find_part("shanghaitech-b", root)
        for split in ("train", "test"):
            list_split(part, split)

    expect_bench_error(read, *needles)


def _ticket_file(tmp_path: Path, backbone: str) -> Path:
    mask = baseline_mask("full", len(model_slots(backbone)))
    prov = {"kind": "baseline", "baseline": "full", "seed": 0}
    return make_ticket(f"{backbone}-se-full", backbone, "se", mask, prov).save(tmp_path / "t.json")


def _transfer(tmp_path: Path, root: Path, task: str, *extra: str) -> list:
    return ["transfer", "--ticket", _ticket_file(tmp_path, "resnet18"), "--task", task,
            "--data-root", root, "--pretrained", "none", "--no-controls", "--out",
            tmp_path / "out", *extra]  # fmt: skip


def test_bad_crowd_annotation_stops_transfer_before_training(
    tmp_path: Path, crowd_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to fail each run, record the failure, and exit 0."""
    root = _copy(crowd_root, tmp_path / "sh")
    _truncate(_gt(root))
    argv = _transfer(tmp_path, root, "crowd_counting", "--dataset", "shanghaitech-b")
    expect_exit_2(argv, capsys, str(_gt(root)), "not a readable .mat")
    assert_nothing_written(tmp_path / "out")


def test_a_corrupt_image_met_mid_training_fails_the_run_with_a_record_naming_it(
    tmp_path: Path, crowd_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The header reads (so the checks before training pass) but the pixels do not."""
    root = _copy(crowd_root, tmp_path / "sh")
    bad = _img(root, 5)
    _truncate(bad, 0.5)
    with Image.open(bad) as im:
        assert im.size[0] > 0  # the header still reads
    argv = _transfer(tmp_path, root, "crowd_counting", "--dataset", "shanghaitech-b",
                     "--iters", "2", "--opt", "crop_size=48")  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert "1 of 1 runs failed" in err
    (record,) = (tmp_path / "out" / "records").rglob("*.json")
    prov = json.loads(record.read_text())["provenance"]
    assert prov["status"] == "failed" and str(bad) in prov["reason"]
    assert "unreadable image" in prov["reason"]


# --------------------------------------------------------------------------- segmentation


def _label(root: Path, split: str = "train") -> Path:
    return sorted((root / "gtFine" / split).rglob(f"*{TRAIN_ID_SUFFIX}"))[0]


def _write_label(array: np.ndarray, mode: str | None = None) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        path = _label(root)
        h, w = np.asarray(Image.open(path)).shape
        Image.fromarray(np.resize(array, (h, w, *array.shape[2:])), mode).save(path)

    return write


def _resize_label(root: Path) -> None:
    path = _label(root)
    Image.open(path).resize((32, 16), Image.Resampling.NEAREST).save(path)


SEG_CASES: list[tuple[str, Callable[[Path], object], tuple[str, ...]]] = [
    (
        "rgb-label",
        lambda r: Image.open(_label(r)).convert("RGB").save(_label(r)),
        ("single-channel 8-bit", "not RGB"),
    ),  # fmt: skip
    (
        "rgba-label",
        lambda r: Image.open(_label(r)).convert("RGBA").save(_label(r)),
        ("not RGBA",),
    ),  # fmt: skip
    ("16-bit-label", _write_label(np.full((2, 2), 300, dtype=np.uint16)), ("not I;16",)),
    (
        "out-of-range-label",
        _write_label(np.array([[0, 40], [255, 77]], dtype=np.uint8)),
        ("label values 40, 77 are no trainIds",),
    ),  # fmt: skip
    (
        "label-ids-in-trainids",
        _write_label(np.array([[7, 26], [33, 24]], dtype=np.uint8)),
        ("label values 24, 26, 33",),
    ),  # fmt: skip
    ("label-other-size", _resize_label, ("32x16, but its image",)),
    ("truncated-label", lambda r: _truncate(_label(r), 0.5), ("unreadable",)),
    ("empty-label", lambda r: _empty(_label(r)), ("unreadable",)),
    ("text-label", lambda r: _text(_label(r)), ("unreadable",)),
    (
        "val-label-bad",
        lambda r: Image.open(_label(r, "val")).convert("RGB").save(_label(r, "val")),
        ("val", "not RGB"),
    ),  # fmt: skip
    (
        "label-ids-only",
        lambda r: [p.unlink() for p in r.rglob(f"*{TRAIN_ID_SUFFIX}")],
        (LABEL_ID_SUFFIX, "python -m tasks.segmentation.data"),
    ),  # fmt: skip
    (
        "image-without-label",
        lambda r: [
            p.unlink()
            for p in (
                _label(r),
                _label(r).with_name(_label(r).name.replace(TRAIN_ID_SUFFIX, LABEL_ID_SUFFIX)),
            )
        ],
        ("images lack a label",),
    ),  # fmt: skip
    (
        "empty-image-split",
        lambda r: [p.unlink() for p in (r / "leftImg8bit" / "val").rglob("*.png")],
        ("no *_leftImg8bit.png",),
    ),  # fmt: skip
    ("no-gtfine-val", lambda r: shutil.rmtree(r / "gtFine" / "val"), ("gtFine/val is missing",)),
    (
        "image-not-png",
        lambda r: _text(sorted((r / "leftImg8bit" / "train").rglob("*.png"))[0]),
        ("_leftImg8bit.png: unreadable",),
    ),  # fmt: skip
]


@pytest.mark.parametrize(
    ("damage", "needles"), [c[1:] for c in SEG_CASES], ids=[c[0] for c in SEG_CASES]
)
def test_bad_cityscapes_data(
    tmp_path: Path,
    cityscapes_root: Path,
    damage: Callable[[Path], object],
    needles: tuple[str, ...],
) -> None:
    root = _copy(cityscapes_root, tmp_path / "cs")
    damage(root)
    problem = cityscapes_missing(root)
    assert problem is not None and "\n" not in problem
    for needle in ("cityscapes", *needles):
        assert needle in problem, f"{needle!r} not in {problem!r}"


def test_bad_cityscapes_label_stops_transfer_before_training(
    tmp_path: Path, cityscapes_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy(cityscapes_root, tmp_path / "cs")
    bad = _label(root)
    _write_label(np.array([[0, 40]], dtype=np.uint8))(root)
    argv = _transfer(tmp_path, root, "segmentation", "--iters", "1")
    expect_exit_2(argv, capsys, str(bad), "label values 40")
    assert_nothing_written(tmp_path / "out")


def test_a_corrupt_photo_met_mid_training_fails_the_segmentation_run_naming_it(
    tmp_path: Path, cityscapes_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """mmcv's loader meets the broken photo inside the Runner; the run's failed record names
    the file, and the command exits 1 in one line."""
    root = _copy(cityscapes_root, tmp_path / "cs")
    bad = sorted((root / "leftImg8bit" / "train").rglob("*.png"))[0]
    _truncate(bad, 0.3)
    argv = _transfer(tmp_path, root, "segmentation", "--iters", "1",
                     "--opt", "num_workers=0")  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert code == 1 and "Traceback" not in err, err[-2000:]
    assert "1 of 1 runs failed" in err
    (record,) = (tmp_path / "out" / "records").rglob("*.json")
    prov = json.loads(record.read_text())["provenance"]
    assert prov["status"] == "failed" and str(bad) in prov["reason"], prov["reason"]
