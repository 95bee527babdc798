"""Fashion-MNIST (the embedded default) from its gzipped IDX files, where Debian installs
them or under --data-root, decompressed once into the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import torch
from torchvision import datasets as tvd
from torchvision.datasets.mnist import read_image_file, read_label_file

from bench.data import transforms as tfm
from bench.data.base import ClassificationDataset, Source, Transform, register_dataset
from bench.data.heldout import HeldoutRule
from bench.util.errors import BenchError, one_line
from bench.util.paths import ENV_CACHE, default_data_root

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


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
