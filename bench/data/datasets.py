"""Classification datasets: registry, on-disk readers, and the recorded held-out split.

Every dataset is one class registered with `@register_dataset`; it knows where its files
live (`open`) and which transforms its protocol uses (`transforms`). `load_splits` turns
any of them into train (minus held-out) / held-out / test views plus an `info` record.
Readers are torchvision's; nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import re
import shutil
import tempfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision.datasets.folder import is_image_file
from torchvision.datasets.mnist import read_image_file, read_label_file

from bench.data import transforms as tfm
from bench.data.batch_augment import BatchPlan
from bench.data.imagefolder import ImageFiles
from bench.util.errors import BenchError, one_line
from bench.util.fingerprint import text_sha256
from bench.util.paths import ENV_CACHE, default_cache_dir, default_data_root
from bench.util.registry import Registry

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "ClassificationDataset",
    "HeldoutRule",
    "Source",
    "SplitView",
    "Splits",
    "default_cache_dir",
    "default_data_root",
    "describe",
    "heldout_digest",
    "heldout_indices",
    "load_splits",
    "register_dataset",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

Transform = Callable[[Any], Any]


# --------------------------------------------------------------------------- held-out split


@dataclass(frozen=True)
class HeldoutRule:
    """How many training images are held out: `count` in total, or per class."""

    count: int
    per_class: bool = False

    @classmethod
    def parse(cls, spec: int | str | HeldoutRule) -> HeldoutRule:
        """Accept 5000, "5000" or "100/class"."""
        if isinstance(spec, HeldoutRule):
            rule = spec
        elif isinstance(spec, int) and not isinstance(spec, bool):
            rule = cls(spec)
        elif isinstance(spec, str) and (m := re.fullmatch(r"\s*(\d+)\s*(/\s*class)?\s*", spec)):
            rule = cls(int(m.group(1)), per_class=bool(m.group(2)))
        else:
            raise BenchError(f"held-out size {spec!r}: expected a count like 5000 or '100/class'")
        if rule.count < 0:
            raise BenchError(f"held-out size {rule.count} is negative")
        return rule

    def __str__(self) -> str:
        return f"{self.count}/class" if self.per_class else str(self.count)


def _rank_keys(n: int, seed: int) -> np.ndarray:
    """A SplitMix64 hash of (seed, index) for each index: the order in which images are held out.

    Pure integer arithmetic, so the split depends on nothing but (seed, index): not on the
    numpy / torch RNG streams (which may change between versions), the platform, or the
    held-out size (a smaller held-out set is a subset of a larger one).
    """
    with np.errstate(over="ignore"):
        z = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z += np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0xD1B54A32D192ED03)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def heldout_indices(
    targets: Sequence[int] | np.ndarray,
    rule: HeldoutRule,
    seed: int,
    *,
    clamp: bool = False,
    classes: Sequence[str] | None = None,
) -> np.ndarray:
    """Sorted indices of the held-out images of a training set with these labels.

    An explicit request (clamp False) is honoured exactly or refused: a per-class rule holds
    out exactly `count` images of every class, and a class with `count` images or fewer (it
    would keep no training image) is a one-line BenchError naming it (`classes[label]` when
    given). `clamp` (the protocol defaults) keeps tiny datasets usable instead: a total
    count is capped at 10% of the set; a per-class rule still holds out exactly `count` of
    every class that keeps at least one training image (ImageNet: 100 of each class, as the
    official EAN code, whatever the class's size: classes hold 732 to 1,300), and only a
    class with `count` images or fewer holds out 10% of itself, at least one (load_splits
    records that as `heldout_clamped`).
    """
    targets = np.asarray(targets, dtype=np.int64)
    n = len(targets)
    keys = _rank_keys(n, seed)
    if not rule.per_class:
        count = min(rule.count, max(1, n // 10)) if clamp else rule.count
        if count and count >= n:
            raise BenchError(
                f"held-out size {count} would leave no training data (the training set has "
                f"{n} images); pass a smaller held-out size"
            )
        return np.sort(np.argsort(keys, kind="stable")[:count])
    # Group by class, lowest key first within each class; the first k of each group are held out.
    order = np.lexsort((keys, targets))
    grouped = targets[order]
    labels, starts, counts = np.unique(grouped, return_index=True, return_counts=True)
    want = np.full(len(labels), rule.count)
    if clamp:
        want = np.where(counts <= rule.count, np.maximum(1, counts // 10), want)
    if rule.count and np.any(short := want >= counts):
        c = int(labels[short][0])
        name = repr(classes[c]) if classes is not None and 0 <= c < len(classes) else str(c)
        raise BenchError(
            f"held-out size {int(want[short][0])}/class would leave class {name} with no "
            f"training data (it has {int(counts[short][0])} images); pass a smaller held-out size"
        )
    rank = np.arange(n) - np.repeat(starts, counts)
    return np.sort(order[rank < np.repeat(want, counts)])


def heldout_digest(indices: Sequence[int] | np.ndarray) -> str:
    """Short sha256 of the sorted held-out indices, so every output names its exact split."""
    text = ",".join(str(int(i)) for i in np.sort(np.asarray(indices, dtype=np.int64)))
    return text_sha256(text, 16)


# --------------------------------------------------------------------------- views and splits


class SplitView(Dataset):
    """A subset of an un-transformed reader with its own transform.

    Train and held-out share one reader (one copy of CIFAR in memory, one scan of an
    ImageNet tree) yet need different transforms, hence the view instead of two readers.
    `pixels`, the reader's images as one (N, C, H, W) uint8 tensor (in-memory datasets
    only), lets a DataLoader batch be transformed at once (`load_batch`).
    """

    def __init__(
        self,
        base: Any,
        indices: np.ndarray,
        transform: Transform | None,
        pixels: torch.Tensor | None = None,
    ) -> None:
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform
        self.pixels = pixels
        self.plan = BatchPlan.of(transform) if pixels is not None else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image, target = self.base[int(self.indices[i])]
        return (self.transform(image) if self.transform else image), int(target)

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, int]]:
        """What a DataLoader batch reads (see load_batch)."""
        return self.load_batch(indices)

    def load_batch(
        self, indices: Sequence[int], reseed: Callable[[int], None] | None = None
    ) -> list[tuple[Any, int]]:
        """`[self[i] for i in indices]`, equal tensors for the same RNG state, transformed as
        one batch when the transform allows; `reseed(k)` runs before sample k draws."""
        if self.plan is None or not indices:
            samples = []
            for k, i in enumerate(indices):
                if reseed is not None:
                    reseed(k)
                samples.append(self[i])
            return samples
        at = np.asarray(indices, dtype=np.int64)
        rows = self.indices[at]
        if self.plan.per_image or self.pixels is None:
            images = self.plan.images([self.base[int(r)][0] for r in rows])
        else:
            images = self.pixels[torch.from_numpy(rows)]
        x = self.plan(images, reseed)
        return [(x[k], int(t)) for k, t in enumerate(self.targets[at])]

    @cached_property
    def targets(self) -> np.ndarray:
        """Labels of this view, without decoding images (for samplers and checks)."""
        return np.asarray(_targets(self.base), dtype=np.int64)[self.indices]


def _targets(reader: Any) -> Sequence[int] | np.ndarray:
    targets = reader.targets
    return targets.numpy() if hasattr(targets, "numpy") else targets


@dataclass(frozen=True)
class Splits:
    """What a task trains and scores on; `info` records which data and split were used."""

    train: SplitView
    heldout: SplitView
    test: SplitView
    num_classes: int
    input_size: tuple[int, int, int]
    classes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- dataset classes


@dataclass(frozen=True)
class Source:
    """A dataset's readers before any transform: items are (PIL image, int label)."""

    train: Any
    test: Any
    classes: tuple[str, ...]
    root: Path


class ClassificationDataset(ABC):
    """One dataset: where its files are, how to read them, and its protocol's transforms."""

    name: ClassVar[str]
    heldout: ClassVar[HeldoutRule]
    layout: ClassVar[str]  # the expected on-disk layout, for --help and error messages

    @abstractmethod
    def open(self, data_root: Path | None, cache_dir: Path) -> Source:
        """Read the dataset (without transforms) or raise a one-line BenchError."""

    @abstractmethod
    def transforms(self, image_size: int | None) -> tuple[Transform, Transform, tuple[int, ...]]:
        """(train transform, eval transform, input size as C, H, W)."""

    def pixels(self, reader: Any) -> torch.Tensor | None:
        """The reader's images as one (N, C, H, W) uint8 tensor (a view, no copy) when it
        holds them in memory and `reader[i]` is exactly image i of it; else None."""
        return None

    @classmethod
    def describe(cls) -> str:
        return f"{cls.name}: {cls.layout}; held-out {cls.heldout} of train"


DATASETS: Registry[type[ClassificationDataset]] = Registry("dataset")


def register_dataset(cls: type[ClassificationDataset]) -> type[ClassificationDataset]:
    """Class decorator: register a dataset under its `name`."""
    return DATASETS.register(cls.name)(cls)


# --- CIFAR ---------------------------------------------------------------------------------


# Everything the official CIFAR pickles (and re-pickled copies, any protocol, numpy 1 or 2)
# reference: numpy arrays, their dtypes and scalars, and protocol 2's bytes. Nothing else.
_CIFAR_GLOBALS = frozenset(
    [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
    + [
        (f"numpy.{core}.multiarray", n)
        for core in ("core", "_core")
        for n in ("_reconstruct", "scalar")
    ]
    + [(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")]
)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what CIFAR batches hold (dicts, lists, str/bytes, numbers, numpy arrays) and
    refuses any other global before it is looked up, so a planted pickle runs no code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name} (not CIFAR data)")
        return super().find_class(module, name)


def read_cifar_pickle(path: Path) -> dict:
    """One CIFAR pickle through `_BatchUnpickler`; BenchError naming the file."""
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
    except Exception as err:  # truncated, foreign, refused: whatever it is, name the file
        raise BenchError(f"{path} is unreadable ({one_line(err)})") from None
    if not isinstance(entry, dict):
        raise BenchError(f"{path} is not a CIFAR batch dictionary (a {type(entry).__name__})")
    return entry


class _SafeCIFAR(tvd.CIFAR10):
    """torchvision's CIFAR reader, reading the pickles with `read_cifar_pickle`.

    torchvision unpickles the batches without limits (a planted file runs code) and pins
    the md5 of every file of the one official archive, saying only "not found or corrupted"
    when a file differs; re-pickled copies (subsets, another protocol, our real-format test
    fixtures) are valid data yet fail it. So the loading is ours, each file checked and
    named; indexing and the PIL conversion stay torchvision's.
    """

    def __init__(self, root: str, train: bool = True) -> None:
        tvd.VisionDataset.__init__(self, root)
        self.train = train
        folder = Path(self.root) / self.base_folder
        files = self.train_list if train else self.test_list
        rows, self.targets = [], []
        for name, _ in files:
            data, labels = _batch_rows(folder / name)
            rows.append(data)
            self.targets.extend(labels)
        self.data = np.vstack(rows).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC
        meta = read_cifar_pickle(folder / self.meta["filename"])
        classes = meta.get(self.meta["key"])
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise BenchError(
                f"{folder / self.meta['filename']} is not a CIFAR meta dictionary "
                f"(no list of names under {self.meta['key']!r})"
            )
        self.classes = classes
        self.class_to_idx = {c: i for i, c in enumerate(classes)}


def _batch_rows(path: Path) -> tuple[np.ndarray, list[int]]:
    """(N x 3072 uint8 rows, N int labels) of one batch file; BenchError naming it."""
    entry = read_cifar_pickle(path)
    data = entry.get("data")
    labels = entry.get("labels", entry.get("fine_labels"))
    ok = isinstance(data, np.ndarray) and isinstance(labels, list | np.ndarray)
    if not ok or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise BenchError(
            f"{path} is not a CIFAR batch dictionary (expected 'data', N x 3072 uint8, and "
            "'labels' or 'fine_labels', N integers)"
        )
    integers = all(isinstance(t, int | np.integer) and not isinstance(t, bool) for t in labels)
    if len(labels) != len(data) or not integers:
        raise BenchError(f"{path}: {len(data)} images but {len(labels)} labels, or non-integers")
    return data, [int(t) for t in labels]


class _CIFAR10Reader(_SafeCIFAR):
    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100Reader(_SafeCIFAR):
    base_folder = tvd.CIFAR100.base_folder
    train_list = [[name, None] for name, _ in tvd.CIFAR100.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR100.test_list]
    meta = {**tvd.CIFAR100.meta, "md5": None}


class _CIFAR(ClassificationDataset):
    reader: ClassVar[type[_SafeCIFAR]]
    num_classes: ClassVar[int]
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]
    layout_files: ClassVar[str]
    # CIFAR has no separate validation set: 5,000 of the 50,000 training images (10%).
    heldout = HeldoutRule(5000)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.layout = f"python pickle batches in <data-root>/{cls.layout_files}"

    @classmethod
    def files(cls) -> list[str]:
        r = cls.reader
        return [n for n, _ in r.train_list + r.test_list] + [r.meta["filename"]]

    def _expected(self, root: Path) -> str:
        return f"expected the python pickle batches at {root / self.layout_files}; pass --data-root"

    def open(self, data_root: Path | None, cache_dir: Path) -> Source:
        root = data_root if data_root is not None else default_data_root()
        if root.name == self.reader.base_folder:  # accept the batches folder itself too
            root = root.parent
        folder = root / self.reader.base_folder
        if not folder.is_dir():
            raise BenchError(f"{self.name}: no folder {folder}; {self._expected(root)}")
        missing = [f for f in self.files() if not (folder / f).is_file()]
        if missing:
            raise BenchError(
                f"{self.name}: missing {', '.join(missing)} in {folder}; {self._expected(root)}"
            )
        try:
            train = self.reader(str(root), train=True)
            test = self.reader(str(root), train=False)
        except BenchError as exc:  # names the file that is wrong
            raise BenchError(f"{self.name}: {exc}; {self._expected(root)}") from None
        classes = tuple(str(c) for c in train.classes)
        for split, reader in (("train", train), ("test", test)):
            labels = np.asarray(reader.targets)
            bad = (
                len(classes) != self.num_classes
                or len(labels) != len(reader.data)
                or (len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes))
            )
            if bad:
                raise BenchError(
                    f"{self.name}: the {split} pickles in {folder} are inconsistent "
                    f"({len(reader.data)} images, {len(labels)} labels, {len(classes)} class "
                    f"names; want {self.num_classes} classes); {self._expected(root)}"
                )
        return Source(train, test, classes, root)

    def transforms(self, image_size: int | None) -> tuple[Transform, Transform, tuple[int, ...]]:
        return tfm.cifar_transforms(self.mean, self.std, image_size)

    def pixels(self, reader: Any) -> torch.Tensor:
        return torch.from_numpy(reader.data).permute(0, 3, 1, 2)  # HWC rows


def _cifar(
    cls_name: str,
    name: str,
    reader: type[_SafeCIFAR],
    num_classes: int,
    stats: tuple[tuple[float, float, float], tuple[float, float, float]],
    files: str,
) -> type[_CIFAR]:
    """Register one CIFAR: its reader, class count, (mean, std) and batch files."""
    attrs = {
        "__module__": __name__,
        "__qualname__": cls_name,
        "name": name,
        "reader": reader,
        "num_classes": num_classes,
        "mean": stats[0],
        "std": stats[1],
        "layout_files": f"{reader.base_folder}/{files}",
    }
    return register_dataset(type(cls_name, (_CIFAR,), attrs))


CIFAR10 = _cifar("CIFAR10", "cifar10", _CIFAR10Reader, 10, (tfm.CIFAR10_MEAN, tfm.CIFAR10_STD),
                 "{data_batch_1..5,test_batch,batches.meta}")  # fmt: skip
CIFAR100 = _cifar("CIFAR100", "cifar100", _CIFAR100Reader, 100,
                  (tfm.CIFAR100_MEAN, tfm.CIFAR100_STD), "{train,test,meta}")  # fmt: skip


# --- ImageNet ------------------------------------------------------------------------------


@register_dataset
class ImageNet(ClassificationDataset):
    name = "imagenet"
    # The official EAN search holds out 100 training images per class (eval transforms).
    heldout = HeldoutRule(100, per_class=True)
    layout = (
        "class-folder trees <data-root>/{train,val}/<wnid>/*.JPEG, the same class folders in "
        "both (without --data-root: the default root's imagenet/ folder)"
    )

    def open(self, data_root: Path | None, cache_dir: Path) -> Source:
        root = data_root if data_root is not None else default_data_root() / "imagenet"
        expected = (
            f"expected class-folder trees {root}/{{train,val}}/<wnid>/*.JPEG with the same "
            "class folders in both; pass --data-root"
        )
        readers = {}
        for split in ("train", "val"):
            folder = root / split
            if not folder.is_dir():
                raise BenchError(f"{self.name}: no folder {folder}; {expected}")
            try:
                readers[split] = ImageFiles(str(folder), cache_dir)
            except (FileNotFoundError, ValueError, OSError) as exc:
                problem = f"{folder}: {one_line(exc)}"
                if any(is_image_file(str(f)) for f in folder.iterdir()):
                    # The original ILSVRC2012 val archive is flat (50,000 JPEGs).
                    problem = f"{folder} holds images directly, not in <wnid>/ class folders"
                raise BenchError(f"{self.name}: {problem}; {expected}") from exc
        train, val = readers["train"], readers["val"]
        if train.classes != val.classes:
            only = sorted(set(train.classes) ^ set(val.classes))
            more = " ..." if len(only) > 5 else ""
            raise BenchError(
                f"{self.name}: train and val class folders differ ({', '.join(only[:5])}{more}); "
                f"{expected}"
            )
        return Source(train, val, tuple(train.classes), root)

    def transforms(self, image_size: int | None) -> tuple[Transform, Transform, tuple[int, ...]]:
        return tfm.imagenet_transforms(image_size)


# --- Fashion-MNIST -------------------------------------------------------------------------


@register_dataset
class FashionMNIST(ClassificationDataset):
    name = "fashion-mnist"
    # Same share as CIFAR: 5,000 of the 60,000 training images.
    heldout = HeldoutRule(5000)
    layout = (
        "idx files {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz in <data-root> (as Debian's "
        f"dataset-fashion-mnist installs them in {DEBIAN_FASHION_MNIST}, the default) or "
        "torchvision's <data-root>/FashionMNIST/raw/"
    )

    @staticmethod
    def _expected(where: str) -> str:
        names = "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz"
        return f"expected the idx files {names} in {where}"

    def open(self, data_root: Path | None, cache_dir: Path) -> Source:
        if data_root is not None:
            roots = [data_root]
        else:  # a copy under the default root wins over the system-wide Debian files
            roots = [default_data_root(), DEBIAN_FASHION_MNIST]
        found = next((r for r in map(self._locate, roots) if r is not None), None)
        if found is None:
            where = " or ".join(str(r) for r in roots)
            hint = "pass --data-root"
            if data_root is None:
                hint = "apt-get install dataset-fashion-mnist or pass --data-root"
            raise BenchError(f"{self.name}: {self._expected(where)}; {hint}")
        # torchvision reads only root/FashionMNIST/raw/<uncompressed>; Debian ships .gz files.
        reader_root = found if _fashion_raw(found) else _decompress_fashion_mnist(found, cache_dir)
        try:
            train = tvd.FashionMNIST(str(reader_root), train=True)
            test = tvd.FashionMNIST(str(reader_root), train=False)
        except Exception as exc:  # torchvision's idx parser asserts / raises on bad files
            raise BenchError(
                f"{self.name}: {_diagnose_idx(found, reader_root, exc)}; "
                f"{self._expected(str(found))}"
            ) from exc
        for split, reader in (("train", train), ("t10k", test)):
            data, labels = reader.data, reader.targets
            if (
                tuple(data.shape[1:]) != (28, 28)
                or len(labels) != len(data)
                or (len(labels) and int(labels.max()) >= len(reader.classes))
            ):
                raise BenchError(
                    f"{self.name}: the {split} idx files in {found} disagree (images "
                    f"{tuple(data.shape)}, {len(labels)} labels; want N x 28 x 28 images and "
                    f"N labels in 0..9); {self._expected(str(found))}"
                )
        return Source(train, test, tuple(train.classes), found)

    @staticmethod
    def _locate(root: Path) -> Path | None:
        """A directory torchvision can read as it is, or one holding the four .gz files."""
        if _fashion_raw(root):
            return root
        for d in (root, root / "fashion-mnist", root / "FashionMNIST" / "raw"):
            if all((d / f"{n}.gz").is_file() for n in FASHION_MNIST_FILES):
                return d
        return None

    def transforms(self, image_size: int | None) -> tuple[Transform, Transform, tuple[int, ...]]:
        return tfm.fashion_mnist_transforms(image_size)

    def pixels(self, reader: Any) -> torch.Tensor:
        return reader.data.unsqueeze(1)  # grey (N, 28, 28), as PIL mode L reads it


def _fashion_raw(root: Path) -> bool:
    """True when torchvision's FashionMNIST reader finds its uncompressed files under root.

    torchvision 0.29 only checks that root/FashionMNIST/raw/<name> exist (no md5), where the
    names are its `resources` without the .gz suffix.
    """
    raw = root / "FashionMNIST" / "raw"
    return all((raw / n).is_file() for n in FASHION_MNIST_FILES)


def _diagnose_idx(found: Path, reader_root: Path, exc: BaseException) -> str:
    """Name the first idx file torchvision's parser rejects (found: where the user's files are)."""
    raw = reader_root / "FashionMNIST" / "raw"
    for n in FASHION_MNIST_FILES:
        parse = read_image_file if "images" in n else read_label_file
        try:
            parse(str(raw / n))
        except Exception as err:
            shown = found / f"{n}.gz" if found != reader_root else raw / n
            return f"{shown} is not a valid idx file ({one_line(err)})"
    return f"unreadable idx files from {found} ({one_line(exc)})"


def _decompress_fashion_mnist(src: Path, cache_dir: Path) -> Path:
    """Decompress the four .gz files once into cache_dir/fashion-mnist-<hash>/FashionMNIST/raw.

    Keyed by the content hash of the .gz files, so changed files get a new copy. Written in a
    temporary sibling and renamed into place, so a crash or a concurrent run never leaves a
    half-written copy that looks complete.
    """
    digest = hashlib.sha256()
    for n in FASHION_MNIST_FILES:
        with open(src / f"{n}.gz", "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    dest = cache_dir / f"fashion-mnist-{digest.hexdigest()[:16]}"
    if _fashion_raw(dest):
        return dest
    unwritable = (
        f"fashion-mnist: cannot write the decompressed idx files to {cache_dir} "
        f"({{}}); set {ENV_CACHE} to a writable folder"
    )
    tmp: Path | None = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".fashion-mnist-", dir=cache_dir))
        raw = tmp / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for n in FASHION_MNIST_FILES:
            with gzip.open(src / f"{n}.gz", "rb") as fin, open(raw / n, "wb") as fout:
                try:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
                    raise BenchError(
                        f"fashion-mnist: {src / n}.gz is not a readable gzip file "
                        f"({one_line(exc)}); {FashionMNIST._expected(str(src))}"
                    ) from exc
        try:
            tmp.rename(dest)
        except OSError:
            if not _fashion_raw(dest):  # a lost race is fine if the winner left a full copy
                raise
    except OSError as exc:
        raise BenchError(unwritable.format(one_line(exc))) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- entry points


def describe(name: str) -> str:
    """One line: the dataset's expected layout and default held-out size."""
    return DATASETS.get(name).describe()


def load_splits(
    name: str,
    data_root: Path | str | None = None,
    *,
    heldout: int | str | HeldoutRule | None = None,
    split_seed: int = 0,
    image_size: int | None = None,
    cache_dir: Path | str | None = None,
) -> Splits:
    """Train (minus held-out, train transforms), held-out and test (eval transforms).

    `heldout` overrides the protocol's size (5000 or "100/class"); the protocol default is
    clamped to 10% of a small training set, an explicit size is honoured or refused.
    `cache_dir` holds derived files (default: $TICKETBENCH_CACHE or ~/.cache/ticketbench).
    """
    spec = DATASETS.get(name)()
    try:
        train_tf, eval_tf, input_size = spec.transforms(image_size)
    except ValueError as exc:
        raise BenchError(f"{name}: {exc}") from exc
    root = Path(data_root).expanduser() if data_root is not None else None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        rule = spec.heldout if heldout is None else HeldoutRule.parse(heldout)
    except BenchError as exc:
        raise BenchError(f"{name}: {exc}") from exc
    source = spec.open(root, cache)

    targets = _targets(source.train)
    try:
        held = heldout_indices(
            targets, rule, split_seed, clamp=heldout is None, classes=source.classes
        )
    except BenchError as exc:
        raise BenchError(f"{name}: {exc}") from exc
    keep = np.setdiff1d(np.arange(len(targets)), held, assume_unique=True)
    splits_info = {
        "dataset": name,
        "root": str(source.root.resolve()),
        "num_classes": len(source.classes),
        "input_size": list(input_size),
        "sizes": {"train": len(keep), "heldout": len(held), "test": len(source.test)},
        "split_seed": split_seed,
        "heldout_rule": str(rule),
        "heldout_clamped": heldout is None and len(held) < _requested(rule, targets),
        "heldout_sha256": heldout_digest(held),
    }
    pixels, test_pixels = spec.pixels(source.train), spec.pixels(source.test)
    return Splits(
        train=SplitView(source.train, keep, train_tf, pixels),
        heldout=SplitView(source.train, held, eval_tf, pixels),
        test=SplitView(source.test, np.arange(len(source.test)), eval_tf, test_pixels),
        num_classes=len(source.classes),
        input_size=(int(input_size[0]), int(input_size[1]), int(input_size[2])),
        classes=source.classes,
        info=splits_info,
    )


def _requested(rule: HeldoutRule, targets: Sequence[int] | np.ndarray) -> int:
    return rule.count * len(np.unique(np.asarray(targets))) if rule.per_class else rule.count
