"""Decode once: a file-backed set's eval images kept as one uint8 array on disk.

An eval transform of an image folder (Resize, CenterCrop, ToTensor, Normalize) is
deterministic, so its pixel steps (everything before ToTensor) are run once per image and
their uint8 output stored in <cache>/decoded/<key>.npy, an (N, C, H, W) array read by
memory map a batch at a time; ToTensor's arithmetic and Normalize run on each batch as
they ran per image (bench.data.batch_augment.BatchPlan; for ImageNet's as a table of what
they make of each of the 256 values per channel), so a batch is bit for bit the batch a
DataLoader would decode. <key>.json beside it records the labels and shape.

The key hashes every file's path, size and modification time (ns), in order, the pixel
steps and the Pillow version that decodes: another file, an edited one or other steps
make a new cache (an edit that keeps a file's size and time is not seen). Both files are
written to temporary names and renamed, the array first: a killed or failed write leaves
no .json, so nothing half-written is trusted; a damaged or foreign pair is rebuilt, and
what a killed writer left is removed the next time. Every process with the same files
reuses the cache. Clear it by deleting the decoded/ folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision import transforms as T

from bench.data.batch_augment import BatchPlan
from bench.util.faults import kill_point
from bench.util.fingerprint import value_sha256
from bench.util.io import atomic_path, atomic_write_json, read_json, remove_stale_temps

__all__ = ["DecodedSet", "decoded_set", "decoding"]

FORMAT = 1
Log = Callable[[str], None]


@dataclass(frozen=True)
class Decoding:
    """What decoding a set takes: its files in order, labels, loader and pixel steps."""

    files: list[str]
    labels: np.ndarray
    loader: Callable[[str], Any]
    plan: BatchPlan
    folder: Path  # where the cache goes

    def key(self) -> str:
        stats = [(f, *_size_time(f)) for f in self.files]
        return value_sha256(
            {"format": FORMAT, "files": stats, "labels": self.labels.tolist(),
             "steps": repr(self.plan.per_image), "pillow": PIL.__version__},
            24,
        )  # fmt: skip


def _size_time(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def decoding(data: Dataset) -> Decoding | None:
    """How to decode `data` once: it is (a Subset of) a SplitView over an image folder
    with a cache folder (bench.data.imagefolder.ImageFiles) and a transform whose steps are
    deterministic with a batch form; None otherwise (in-memory or random sets)."""
    rows: np.ndarray | None = None
    while isinstance(data, Subset):
        inner = np.asarray(data.indices, dtype=np.int64)
        rows = inner if rows is None else inner[rows]
        data = data.dataset
    base = getattr(data, "base", None)
    folder = getattr(base, "cache_dir", None)
    samples = getattr(base, "samples", None)
    if folder is None or samples is None or base.transform or base.target_transform:
        return None
    plan = BatchPlan.of(getattr(data, "transform", None))
    if plan is None or plan.crop is not None or plan.flip is not None:
        return None
    view = np.asarray(data.indices, dtype=np.int64)
    rows = view if rows is None else view[rows]
    files = [samples[int(r)][0] for r in rows]
    labels = np.asarray([samples[int(r)][1] for r in rows], dtype=np.int64)
    return Decoding(files, labels, base.loader, plan, Path(folder) / "decoded")


class DecodedSet:
    """A decoded set: batches of positions s..e as (float inputs, int64 labels)."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, plan: BatchPlan) -> None:
        self.pixels, self.labels, self.plan = pixels, labels, plan
        self._table = _value_table(plan, pixels.shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, s: int, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.from_numpy(self.labels[s:e].copy())
        if self._table is None:
            return self.plan(torch.from_numpy(np.array(self.pixels[s:e]))), labels
        u8 = self.pixels[s:e]
        x = np.empty(u8.shape, np.float32)
        for c, table in enumerate(self._table):
            x[:, c] = table[u8[:, c]]
        return torch.from_numpy(x), labels


def _value_table(plan: BatchPlan, channels: int) -> np.ndarray | None:
    """(C, 256) float32: what the plan's tensor steps make of each uint8 value in each
    channel, when they are per channel and per value (ToTensor and Normalize: no pad, no
    channel change). Computed by those very steps, so a lookup gives their bits in one
    pass instead of four; None otherwise."""
    if plan.pads or not all(type(t) is T.Normalize for t in plan.tail):
        return None
    if torch.get_default_dtype() != torch.float32:
        return None
    values = torch.arange(256, dtype=torch.uint8).repeat(channels, 1)[None, :, None, :]
    return plan(values)[0, :, 0, :].numpy()


def decoded_set(data: Dataset, *, workers: int = 0, log: Log | None = None) -> DecodedSet | None:
    """`data` decoded once (module docstring): the cache read, or built first; None when
    `data` cannot be cached (`decoding`) or the cache cannot be written (said in `log`)."""
    plan = decoding(data)
    if plan is None or not plan.files:
        return None
    say = log or (lambda _m: None)
    key = plan.key()
    array, meta = plan.folder / f"{key}.npy", plan.folder / f"{key}.json"
    if meta.exists():
        got = _open(array, meta, key, plan)
        if got is not None:
            return got
        say(f"note: decode cache {meta} is damaged or stale; building it again")
    say(f"decoding {len(plan.files)} images once into {array}")
    try:
        shape = _build(plan, array, workers)
        atomic_write_json(meta, {"format": FORMAT, "key": key, "count": len(plan.files),
                                 "shape": list(shape), "labels": plan.labels.tolist()},
                          indent=None)  # fmt: skip
    except (OSError, _Ragged) as e:
        say(f"note: no decode cache ({array}: {e}); images are decoded for every candidate")
        return None
    return _open(array, meta, key, plan)


def _open(array: Path, meta: Path, key: str, plan: Decoding) -> DecodedSet | None:
    """The cache if `meta` and `array` are complete and are `key`'s; else None."""
    try:
        info = read_json(meta)
        pixels = np.load(array, mmap_mode="r")
        ok = (
            info["format"] == FORMAT
            and info["key"] == key
            and info["count"] == len(plan.files) == len(pixels)
            and list(pixels.shape) == info["shape"]
            and pixels.dtype == np.uint8
            and info["labels"] == plan.labels.tolist()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return DecodedSet(pixels, plan.labels, plan.plan) if ok else None


class _Ragged(Exception):
    """The pixel steps gave images of different shapes: no one array holds them."""


class _Pixels(Dataset):
    """Item i: file i through the loader and the pixel steps, as (C, H, W) uint8."""

    def __init__(self, plan: Decoding) -> None:
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.plan.plan.images([self.plan.loader(self.plan.files[i])])[0]


def _build(plan: Decoding, array: Path, workers: int) -> tuple[int, ...]:
    """Decode every file into a temporary array, rename it to `array`; its shape."""
    if array.parent.is_dir():
        remove_stale_temps(array.parent, array.name)  # what a killed writer left
    loader = DataLoader(_Pixels(plan), batch_size=64, num_workers=workers,
                        collate_fn=list, generator=torch.Generator().manual_seed(0))  # fmt: skip
    with atomic_path(array) as tmp:
        out, at = None, 0
        for images in loader:
            for image in images:
                if out is None:
                    shape = (len(plan.files), *image.shape)
                    out = np.lib.format.open_memmap(tmp, "w+", np.uint8, shape)
                if tuple(image.shape) != out.shape[1:]:
                    raise _Ragged(f"image {at} is {tuple(image.shape)}, not {out.shape[1:]}")
                out[at] = image.numpy()
                at += 1
            kill_point("decoded.batch")
        assert out is not None
        shape = out.shape
        out.flush()
        del out
    return shape
