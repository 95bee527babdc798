"""Where a scorer's images come from: the held-out scoring set, batch by batch.

Every source yields the same batches, (span, inputs, labels) with span the positions
s..e of the set, bit for bit; they differ in what it costs per candidate:
  * `PreloadedSet`: decoded and transformed once into tensors on the device (the set fits
    in `preload_mb`); the same tensors for a span every time, so work can be shared.
  * `StreamedSet`: read through a DataLoader per candidate (every image decoded again).
  * `CachedSet`: read from the set's decode-once uint8 cache (bench.data.decoded) by
    memory map, normalised per batch: no candidate decodes an image.
A file-backed set (an image folder) is decoded once into that cache also when it is
preloaded, so later processes scoring the same images (other seeds, strategies, ranks'
reruns) read it instead of decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from bench.data.decoded import DecodedSet

__all__ = [
    "Batch",
    "CachedSet",
    "PreloadedSet",
    "ScoringSource",
    "StreamedSet",
    "eval_loader",
]

Batch = tuple[tuple[int, int], torch.Tensor, torch.Tensor]


class ScoringSource(Protocol):
    """The scoring set, batch by batch."""

    in_memory: bool  # the same tensors for the same span each time (prefix cache allowed)

    def batches(self, n: int) -> Iterator[Batch]:
        """(span, inputs, labels) of positions 0..n-1, in order, on the scorer's device."""
        ...


def eval_loader(data: Dataset, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    """The scoring set's DataLoader: in order, no shuffling."""
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        # Its own generator: never draw worker seeds from the global torch RNG.
        generator=torch.Generator().manual_seed(0),
    )


class PreloadedSet:
    """The whole set as two tensors on the device, sliced into batches."""

    in_memory = True

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    @classmethod
    def load(cls, data: Dataset, batch_size: int, workers: int, device: torch.device):
        """Decode and transform `data` once, through its DataLoader."""
        xs, ys = [], []
        for x, y in eval_loader(data, batch_size, workers, device):
            xs.append(x)
            ys.append(torch.as_tensor(y))
        return cls(torch.cat(xs).to(device), torch.cat(ys).to(device), batch_size)

    @classmethod
    def of_decoded(cls, data: DecodedSet, batch_size: int, device: torch.device):
        """The whole decoded set, normalised batch by batch as the DataLoader would."""
        parts = [data.batch(s, min(s + batch_size, len(data)))
                 for s in range(0, len(data), batch_size)]  # fmt: skip
        xs, ys = zip(*parts)
        return cls(torch.cat(xs).to(device), torch.cat(ys).to(device), batch_size)

    def batches(self, n: int) -> Iterator[Batch]:
        for s in range(0, n, self.batch_size):
            e = min(s + self.batch_size, n)
            yield (s, e), self.x[s:e], self.y[s:e]


class StreamedSet:
    """The set read through a fresh DataLoader for every candidate."""

    in_memory = False

    def __init__(self, data: Dataset, batch_size: int, workers: int, device: torch.device):
        self.data, self.batch_size, self.workers, self.device = data, batch_size, workers, device

    def batches(self, n: int) -> Iterator[Batch]:
        part = Subset(self.data, range(n))
        s, dev = 0, self.device
        for x, y in eval_loader(part, self.batch_size, self.workers, dev):
            span, s = (s, s + len(x)), s + len(x)
            yield span, x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)


class CachedSet:
    """The set read from its decode-once cache, a batch at a time."""

    in_memory = False

    def __init__(self, data: DecodedSet, batch_size: int, device: torch.device) -> None:
        self.data, self.batch_size, self.device = data, batch_size, device

    def batches(self, n: int) -> Iterator[Batch]:
        dev = self.device
        for s in range(0, n, self.batch_size):
            e = min(s + self.batch_size, n)
            x, y = self.data.batch(s, e)
            yield (s, e), x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
