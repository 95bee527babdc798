"""The held-out split carved from train (seeded, per class or a count, recorded by its
digest) and the views a task trains and scores on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.batch_augment import BatchPlan
from bench.util.errors import BenchError
from bench.util.fingerprint import text_sha256

Transform = Callable[[Any], Any]


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
        return np.asarray(targets_of(self.base), dtype=np.int64)[self.indices]


def targets_of(reader: Any) -> Sequence[int] | np.ndarray:
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
