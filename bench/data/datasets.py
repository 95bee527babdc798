"""Classification datasets: `load_splits`, the one entry point, and the ImageNet folders.

Every dataset is one class registered with `@register_dataset` (bench.data.base; CIFAR in
cifar.py, Fashion-MNIST in fashion_mnist.py, ImageNet here); it knows where its files live
(`open`) and which transforms its protocol uses (`transforms`). `load_splits` turns any of
them into train (minus held-out) / held-out / test views (bench.data.heldout) plus an
`info` record. Readers are torchvision's; nothing is ever downloaded. Import DATASETS from
here: importing this module registers every dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torchvision.datasets.folder import is_image_file

import bench.data.cifar  # noqa: F401  (registers CIFAR-10 and CIFAR-100)
from bench.data import transforms as tfm
from bench.data.base import DATASETS, ClassificationDataset, Source, Transform, register_dataset
from bench.data.fashion_mnist import DEBIAN_FASHION_MNIST
from bench.data.heldout import (
    HeldoutRule,
    Splits,
    SplitView,
    heldout_digest,
    heldout_indices,
    targets_of,
)
from bench.data.imagefolder import ImageFiles
from bench.util.errors import BenchError, one_line
from bench.util.paths import default_cache_dir, default_data_root

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

    targets = targets_of(source.train)
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
