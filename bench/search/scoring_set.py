"""Where a scorer's images come from: the held-out scoring set, batch by batch.

Every source yields the same batches, (span, inputs, labels) with span the positions
s..e of the set, bit for bit; they differ in what it costs per candidate:
  * `PreloadedSet`: decoded and transformed once into tensors on the device (the set fits
    in `preload_mb`); the same tensors for a span every time, so work can be shared.
  * `StreamedSet`: read through a DataLoader per candidate (every image decoded again).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = ["Batch", "PreloadedSet", "ScoringSource", "StreamedSet", "eval_loader"]

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
