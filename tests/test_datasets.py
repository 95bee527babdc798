"""Classification datasets: real readers on real-format fixtures, held-out split, errors."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import (
    DEBIAN_FASHION_MNIST,
    write_cifar,
    write_fashion_mnist_idx,
    write_idx,
)

from bench.data import datasets as ds
from bench.data import fashion_mnist
from bench.data import transforms as tfm
from bench.data.datasets import DATASETS, HeldoutRule, heldout_digest, load_splits
from bench.util.errors import BenchError
from bench.util.paths import ENV_DATA_ROOT

CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    "cifar100": ("cifar-100-python", ["train"], ["test"]),
}


def _pickled(folder: Path, names: list[str]) -> tuple[np.ndarray, list[int]]:
    """The raw rows and labels of CIFAR pickles, read without torchvision."""
    data, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data.append(entry["data"])
        labels += entry.get("labels", entry.get("fine_labels", []))
    return np.vstack(data), labels


def _one_line_error(excinfo: pytest.ExceptionInfo[BenchError], *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_datasets_and_describes_them() -> None:
    assert DATASETS.list() == ["cifar10", "cifar100", "fashion-mnist", "imagenet"]
    assert "cifar-10-batches-py" in ds.describe("cifar10")
    assert "/usr/share/datasets/fashion-mnist" in ds.describe("fashion-mnist")
    assert "100/class" in ds.describe("imagenet")
    with pytest.raises(BenchError, match="unknown dataset 'mnist'"):
        load_splits("mnist")


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reads_the_pickles(name: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(f"{name}_root")
    base, train_files, test_files = CIFAR_FILES[name]
    raw_train, train_labels = _pickled(root / base, train_files)
    raw_test, test_labels = _pickled(root / base, test_files)

    s = load_splits(name, root, heldout=6)
    assert s.num_classes == (10 if name == "cifar10" else 100)
    assert len(s.classes) == s.num_classes and s.input_size == (3, 32, 32)
    assert len(s.train) + len(s.heldout) == len(train_labels)
    assert len(s.test) == len(test_labels)
    assert sorted(s.train.targets.tolist() + s.heldout.targets.tolist()) == sorted(train_labels)
    assert s.test.targets.tolist() == test_labels

    # Eval transform = the stored pixels, normalized with the dataset's own statistics.
    mean, std = (
        (tfm.CIFAR10_MEAN, tfm.CIFAR10_STD)
        if name == "cifar10"
        else (tfm.CIFAR100_MEAN, tfm.CIFAR100_STD)
    )
    image, label = s.test[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label == test_labels[3]
    pixels = image * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    expected = torch.from_numpy(raw_test[3].reshape(3, 32, 32)).float() / 255
    assert torch.allclose(pixels, expected, atol=1e-5)

    image, _ = s.train[0]
    assert image.shape == (3, 32, 32)


def test_cifar_accepts_the_batches_folder_itself(cifar10_root: Path) -> None:
    s = load_splits("cifar10", cifar10_root / "cifar-10-batches-py", heldout=2)
    assert s.info["root"] == str(cifar10_root.resolve())


def test_cifar_train_transform_is_the_protocol() -> None:
    train, evaluate, size = tfm.cifar_transforms(tfm.CIFAR10_MEAN, tfm.CIFAR10_STD)
    names = [type(t).__name__ for t in train.transforms]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert train.transforms[0].padding == 4 and train.transforms[0].size == (32, 32)
    assert [type(t).__name__ for t in evaluate.transforms] == ["ToTensor", "Normalize"]
    assert size == (3, 32, 32)


# --------------------------------------------------------------------------- ImageNet


def test_imagenet_reads_the_class_folders(imagenet_root: Path) -> None:
    s = load_splits("imagenet", imagenet_root, heldout="1/class", image_size=64)
    wnids = sorted(p.name for p in (imagenet_root / "train").iterdir())
    assert s.classes == tuple(wnids) and s.num_classes == 4
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert (len(s.train), len(s.heldout), len(s.test)) == (20, 4, 8)
    assert np.bincount(s.heldout.targets).tolist() == [1, 1, 1, 1]
    assert s.input_size == (3, 64, 64)
    for view in (s.train, s.heldout, s.test):
        image, label = view[0]
        assert image.shape == (3, 64, 64) and 0 <= label < 4
    # The test split reads val/ with train's class indices.
    path, label = s.test.base.samples[-1]
    assert Path(path).parent.name == wnids[label]


def test_imagenet_protocol_sizes(imagenet_root: Path) -> None:
    s = load_splits("imagenet", imagenet_root, heldout=0)
    assert s.input_size == (3, 224, 224)
    assert s.train[0][0].shape == s.test[0][0].shape == (3, 224, 224)
    evaluate = s.test.transform.transforms
    assert evaluate[0].size == 256 and evaluate[1].size == (224, 224)
    assert type(s.train.transform.transforms[0]).__name__ == "RandomResizedCrop"


def _age(folder: Path, seconds: float = 60.0) -> None:
    """Set every directory's time `seconds` back (a folder not written just now)."""
    for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        t = d.stat().st_mtime - seconds
        os.utime(d, (t, t))


def test_imagenet_file_list_is_scanned_once(tmp_path: Path) -> None:
    from fixtures import write_imagefolder

    from bench.data.imagefolder import ImageFiles, file_list_path

    root = write_imagefolder(tmp_path / "in", classes=2, train_per_class=3, val_per_class=1)
    train, cache = str(root / "train"), tmp_path / "cache"
    fresh = ImageFiles(train, cache)
    assert not fresh.list_reused and not file_list_path(train, cache).exists()  # too recent
    _age(root)
    first = ImageFiles(train, cache)
    kept = file_list_path(train, cache)
    assert not first.list_reused and kept.is_file()
    again = ImageFiles(train, cache)  # a later process reads the list
    assert again.list_reused and again.samples == first.samples == fresh.samples
    # A new file changes its folder's time: scanned again, the new file listed.
    wnid = first.classes[1]
    shutil.copy(first.samples[0][0], root / "train" / wnid / "extra.JPEG")
    changed = ImageFiles(train, cache)
    assert not changed.list_reused and len(changed.samples) == len(first.samples) + 1
    # A damaged list is scanned again, never trusted.
    _age(root)
    ImageFiles(train, cache)
    kept.write_text('{"format": 1, "samples": [')
    damaged = ImageFiles(train, cache)
    assert not damaged.list_reused and damaged.samples == changed.samples


# --------------------------------------------------------------------------- Fashion-MNIST


def _idx_labels(path: Path) -> list[int]:
    with gzip.open(path, "rb") as f:
        return list(f.read()[8:])


def test_fashion_mnist_reads_debian_named_gz_files(fashion_mnist_gz_dir: Path, cache: Path) -> None:
    s = load_splits("fashion-mnist", fashion_mnist_gz_dir, heldout=10, cache_dir=cache)
    train_labels = _idx_labels(fashion_mnist_gz_dir / "train-labels-idx1-ubyte.gz")
    test_labels = _idx_labels(fashion_mnist_gz_dir / "t10k-labels-idx1-ubyte.gz")
    assert s.num_classes == 10 and s.classes[0] == "T-shirt/top"
    assert sorted(s.train.targets.tolist() + s.heldout.targets.tolist()) == sorted(train_labels)
    assert s.test.targets.tolist() == test_labels
    assert s.info["root"] == str(fashion_mnist_gz_dir.resolve())

    image, _ = s.test[0]
    assert image.shape == (3, 32, 32)
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # grey x 3
    border = (0 - tfm.FASHION_MNIST_MEAN) / tfm.FASHION_MNIST_STD  # the 2-px zero padding
    assert torch.allclose(image[0, :2], torch.full((2, 32), border))
    assert s.train[0][0].shape == (3, 32, 32)

    # Decompressed once into torchvision's layout; a second load reuses the copy.
    copies = list(cache.iterdir())
    assert len(copies) == 1 and (copies[0] / "FashionMNIST" / "raw").is_dir()
    stamp = (copies[0] / "FashionMNIST/raw/train-images-idx3-ubyte").stat().st_mtime_ns
    load_splits("fashion-mnist", fashion_mnist_gz_dir, heldout=10, cache_dir=cache)
    assert list(cache.iterdir()) == copies
    assert (copies[0] / "FashionMNIST/raw/train-images-idx3-ubyte").stat().st_mtime_ns == stamp

    # The decompressed copy is itself a valid torchvision root.
    direct = load_splits("fashion-mnist", copies[0], heldout=10, cache_dir=cache)
    assert direct.info["heldout_sha256"] == s.info["heldout_sha256"]


def test_fashion_mnist_found_without_data_root(
    fashion_mnist_gz_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_DATA_ROOT, str(tmp_path / "nothing"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", fashion_mnist_gz_dir)
    s = load_splits("fashion-mnist", cache_dir=cache)
    assert s.info["root"] == str(fashion_mnist_gz_dir.resolve())


def test_fashion_mnist_from_foolbox_pictures(tmp_path: Path, cache: Path) -> None:
    root = write_fashion_mnist_idx(tmp_path / "fm", source="foolbox")
    s = load_splits("fashion-mnist", root, heldout=5, cache_dir=cache)
    assert (len(s.train), len(s.heldout), len(s.test)) == (55, 5, 20)


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_real_debian_files(cache: Path) -> None:
    s = load_splits("fashion-mnist", DEBIAN_FASHION_MNIST, cache_dir=cache)
    assert (len(s.train), len(s.heldout), len(s.test)) == (55000, 5000, 10000)
    assert not s.info["heldout_clamped"]
    assert np.bincount(s.test.targets).tolist() == [1000] * 10


# --------------------------------------------------------------------------- held-out split


def test_heldout_is_deterministic_disjoint_and_recorded(cifar10_root: Path) -> None:
    a = load_splits("cifar10", cifar10_root, heldout=7, split_seed=3)
    b = load_splits("cifar10", cifar10_root, heldout=7, split_seed=3)
    c = load_splits("cifar10", cifar10_root, heldout=7, split_seed=4)
    n = len(a.train) + len(a.heldout)
    assert np.array_equal(a.heldout.indices, b.heldout.indices)
    assert not np.array_equal(a.heldout.indices, c.heldout.indices)
    assert len(a.heldout) == 7 and not set(a.train.indices) & set(a.heldout.indices)
    assert sorted([*a.train.indices, *a.heldout.indices]) == list(range(n))
    assert a.info == b.info
    assert a.info["sizes"] == {"train": n - 7, "heldout": 7, "test": len(a.test)}
    assert a.info["split_seed"] == 3 and a.info["heldout_rule"] == "7"
    assert a.info["heldout_sha256"] == heldout_digest(a.heldout.indices)
    assert a.info["heldout_sha256"] != c.info["heldout_sha256"]
    # Held-out images get the (deterministic) eval transform.
    assert torch.equal(a.heldout[0][0], a.heldout[0][0])
    assert a.heldout.transform is a.test.transform


def test_heldout_split_never_changes() -> None:
    """Recorded splits must stay reproducible: this digest may never change."""
    targets = np.arange(1000) % 10
    total = ds.heldout_indices(targets, HeldoutRule(100), seed=0)
    per_class = ds.heldout_indices(targets, HeldoutRule(10, per_class=True), seed=0)
    assert heldout_digest(total) == "a1398c6d491a4266"
    assert heldout_digest(per_class) == "6dee621cf6ddafe5"
    assert np.bincount(targets[per_class]).tolist() == [10] * 10
    # A smaller held-out set is part of a larger one.
    assert set(ds.heldout_indices(targets, HeldoutRule(50), seed=0)) <= set(total)


def test_heldout_default_is_clamped_on_tiny_sets(cifar10_root: Path, imagenet_root: Path) -> None:
    s = load_splits("cifar10", cifar10_root)
    assert s.info["heldout_rule"] == "5000" and s.info["heldout_clamped"]
    assert len(s.heldout) == 48 // 10 and len(s.train) == 48 - 4
    s = load_splits("imagenet", imagenet_root, image_size=32)
    assert s.info["heldout_rule"] == "100/class" and s.info["heldout_clamped"]
    assert np.bincount(s.heldout.targets).tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("heldout", "needle"),
    [(48, "would leave no training data"), ("6/class", "would leave class"), ("lots", "100/class")],
)
def test_heldout_too_large_or_malformed(cifar10_root: Path, heldout: object, needle: str) -> None:
    with pytest.raises(BenchError) as excinfo:
        load_splits("cifar10", cifar10_root, heldout=heldout)  # type: ignore[arg-type]
    _one_line_error(excinfo, needle)


def test_heldout_rule_parsing() -> None:
    assert HeldoutRule.parse("100/class") == HeldoutRule(100, per_class=True)
    assert HeldoutRule.parse(" 5000 ") == HeldoutRule.parse(5000) == HeldoutRule(5000)
    with pytest.raises(BenchError):
        HeldoutRule.parse(-1)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "imagenet", "fashion-mnist"])
def test_missing_root_is_one_clear_line(name: str, tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(BenchError) as excinfo:
        load_splits(name, root, cache_dir=tmp_path / "cache")
    msg = _one_line_error(excinfo, name, str(root), "expected", "--data-root")
    if name == "cifar10":
        assert "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}" in msg


def test_fashion_mnist_missing_everywhere_names_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DATA_ROOT, str(tmp_path / "data"))
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    with pytest.raises(BenchError) as excinfo:
        load_splits("fashion-mnist", cache_dir=tmp_path / "cache")
    _one_line_error(excinfo, str(tmp_path / "data"), str(tmp_path / "debian"), "apt-get")


def test_truncated_cifar_pickle_is_named(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path, "cifar10")
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[: batch.stat().st_size // 2])
    with pytest.raises(BenchError) as excinfo:
        load_splits("cifar10", tmp_path)
    _one_line_error(excinfo, str(batch), "unreadable", "expected the python pickle batches")


def test_cifar_pickle_with_wrong_keys_is_named(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path, "cifar100")
    with open(folder / "test", "wb") as f:
        pickle.dump({"images": []}, f)
    with pytest.raises(BenchError) as excinfo:
        load_splits("cifar100", tmp_path)
    _one_line_error(excinfo, str(folder / "test"), "not a CIFAR batch")


def test_cifar_missing_meta_is_named(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path, "cifar10")
    (folder / "batches.meta").unlink()
    with pytest.raises(BenchError) as excinfo:
        load_splits("cifar10", tmp_path)
    _one_line_error(excinfo, "missing batches.meta", str(folder))


def test_empty_imagefolder_is_one_clear_line(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
    with pytest.raises(BenchError) as excinfo:
        load_splits("imagenet", tmp_path)
    _one_line_error(excinfo, str(tmp_path / "train"), "<wnid>/*.JPEG", "class folder")

    (tmp_path / "train" / "n01440764").mkdir()  # a class folder without images
    with pytest.raises(BenchError) as excinfo:
        load_splits("imagenet", tmp_path)
    _one_line_error(excinfo, "n01440764", "expected class-folder trees")


def test_flat_imagenet_val_gets_a_hint(imagenet_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    shutil.copytree(imagenet_root, root)
    for image in list((root / "val").glob("*/*.JPEG")):
        image.rename(root / "val" / image.name)
    for folder in (root / "val").iterdir():
        if folder.is_dir():
            folder.rmdir()
    with pytest.raises(BenchError) as excinfo:
        load_splits("imagenet", root)
    _one_line_error(excinfo, f"{root / 'val'} holds images directly", "<wnid>")


def test_imagefolder_train_and_val_must_agree(imagenet_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "in"
    shutil.copytree(imagenet_root, root)
    extra = next((root / "val").iterdir())
    extra.rename(root / "val" / "n99999999")
    with pytest.raises(BenchError) as excinfo:
        load_splits("imagenet", root)
    _one_line_error(excinfo, "class folders differ", "n99999999")


def test_corrupt_fashion_mnist_gz_is_named(
    fashion_mnist_gz_dir: Path, tmp_path: Path, cache: Path
) -> None:
    root = tmp_path / "fm"
    shutil.copytree(fashion_mnist_gz_dir, root)
    bad = root / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(BenchError) as excinfo:
        load_splits("fashion-mnist", root, cache_dir=cache)
    _one_line_error(excinfo, str(bad), "gzip")
    assert not [p for p in cache.iterdir()]  # no half-written copy left behind


def test_malformed_fashion_mnist_idx_is_named(tmp_path: Path, cache: Path) -> None:
    root = write_fashion_mnist_idx(tmp_path / "fm", source="foolbox")
    labels = root / "train-labels-idx1-ubyte.gz"
    with gzip.open(labels, "rb") as f:
        content = f.read()
    write_idx(labels, np.frombuffer(content[8:-5], dtype=np.uint8))  # 5 labels fewer
    with pytest.raises(BenchError) as excinfo:
        load_splits("fashion-mnist", root, cache_dir=cache)
    _one_line_error(excinfo, str(root), "train idx files", "disagree")

    with gzip.open(labels, "wb") as f:
        f.write(content[:-5])  # the header still promises all labels
    with pytest.raises(BenchError) as excinfo:
        load_splits("fashion-mnist", root, cache_dir=cache)
    _one_line_error(excinfo, f"{labels} is not a valid idx file")


def test_image_size_is_validated(cifar10_root: Path) -> None:
    with pytest.raises(BenchError, match="image_size"):
        load_splits("cifar10", cifar10_root, image_size=4)
