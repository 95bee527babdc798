"""CIFAR-10/100 from the official python pickles, read by a safe unpickler (numpy arrays
only) through torchvision's readers.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torchvision import datasets as tvd

from bench.data import transforms as tfm
from bench.data.base import ClassificationDataset, Source, Transform, register_dataset
from bench.data.heldout import HeldoutRule
from bench.util.errors import BenchError, one_line
from bench.util.paths import default_data_root

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
