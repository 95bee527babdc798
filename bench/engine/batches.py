"""The batches of one training epoch, and the seeds its samples are drawn with.

`EpochBatches` is the DataLoader's batch sampler: the DistributedSampler's order for the
epoch, cut into batches, from batch `start` on, so a run resumed mid-epoch skips what it
trained by index, without loading a sample. With DataLoader workers, each index comes
with a seed that is a pure function of (epoch key, index) and `SeededSamples` seeds every
global CPU RNG of the worker with it before reading the sample: the augmentation of a sample
then depends on neither the worker nor the batches before it, so no worker state needs
checkpointing.

A dataset may read a whole batch at once: `__getitems__(indices)` (torch's DataLoader calls
it) and, for `SeededSamples`, `load_batch(indices, reseed)`, which must return what
`[dataset[i] for i in indices]` would, calling `reseed(k)` before sample k draws anything.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, DistributedSampler

__all__ = ["EpochBatches", "SeededSamples", "sample_seed"]


def sample_seed(key: int, index: int) -> int:
    """splitmix64 of (key, index): a well-spread 63-bit seed per sample."""
    z = (key + 0x9E3779B97F4A7C15 * (index + 1)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & (2**63 - 1)


class SeededSamples(Dataset):
    """`base[index]` drawn with the sample's own seed (in a worker: its RNGs are its own)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        seed, index = key
        _seed_all(seed)
        return self.base[index]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Any]:
        """A batch: one `load_batch` call when the base has it, each sample still drawn
        with its own seed."""
        load = getattr(self.base, "load_batch", None)
        if load is None:
            return [self[key] for key in keys]
        return load([index for _, index in keys], lambda k: _seed_all(keys[k][0]))


def _seed_all(seed: int) -> None:
    """Seed every global RNG a transform in a worker draws from: python's, numpy's, torch's
    CPU generator (the same stream as torch.manual_seed, without its ~0.1 ms of lazy
    accelerator seeding per call, which a CPU worker never uses)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)


class EpochBatches:
    """The index batches of one epoch from batch `start` on, as a DataLoader batch_sampler.

    A resumed epoch skips what was trained by index, without loading a sample. With
    `seeded`, each index comes as (sample seed, index) for `SeededSamples`.
    """

    def __init__(
        self, sampler: DistributedSampler, batch_size: int, drop_last: bool, seeded: bool
    ) -> None:
        self.batches = BatchSampler(sampler, batch_size, drop_last)
        self.seeded, self.key, self.start = seeded, 0, 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[Any]]:
        for i, batch in enumerate(self.batches):
            if i >= self.start:
                yield [(sample_seed(self.key, j), j) for j in batch] if self.seeded else batch
