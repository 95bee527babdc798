"""The classification dataset contract (`ClassificationDataset`, `Source`) and its registry:
adding a dataset is one class decorated with `@register_dataset`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from bench.data.heldout import HeldoutRule, Transform
from bench.util.registry import Registry


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
