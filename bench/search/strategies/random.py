"""Random search: uniformly sampled masks that were not scored yet, under the shared budget."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch

from bench.search.evaluator import Evaluation, Mask
from bench.search.strategies.base import STRATEGIES, Strategy

# Below this many slots a rejection streak means the space is nearly used up: enumerate.
_ENUMERABLE = 20
_TRIES = 100


def fresh_mask(strategy: Strategy, taken: set[Mask]) -> Mask | None:
    """A uniformly random mask neither scored nor in `taken`; None when none is left."""
    n = strategy.n
    for _ in range(_TRIES):
        m = strategy.random_mask()
        if m not in taken and not strategy.ctx.known(m):
            return m
    if n > _ENUMERABLE:
        return m  # 100 repeats in 2^21+ masks: accept a (free) cache hit
    free = [
        m
        for m in itertools.product((0, 1), repeat=n)
        if m not in taken and not strategy.ctx.known(m)
    ]
    if not free:
        return None
    return free[int(torch.randint(len(free), (1,), generator=strategy.gen))]


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    """Each round proposes `random_batch` unseen masks, every one equally likely."""

    name = "random"
    supports_halving = True

    def ask(self) -> list[Mask]:
        out: list[Mask] = []
        for _ in range(self.ctx.hp.random_batch):
            m = fresh_mask(self, set(out))
            if m is None:
                break
            out.append(m)
        return out

    def tell(self, asked: Sequence[Mask], results: Sequence[Evaluation]) -> list[dict[str, Any]]:
        return [{} for _ in results]

    def keep_probabilities(self) -> list[float]:
        return [0.5] * self.n
