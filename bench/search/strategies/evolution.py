"""Regularized (aging) evolution (Real et al. 2019) over masks, under the shared budget.

The population starts as uniformly random unseen masks; then each child is a one-bit flip
of the best of `tournament` members drawn at random, and the oldest member dies. A child
that was already scored is a free cache hit but still joins the population (aging).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bench.search.evaluator import Evaluation, Mask
from bench.search.strategies.base import STRATEGIES, Strategy, flip
from bench.search.strategies.random import fresh_mask


@STRATEGIES.register("evolution")
class RegularizedEvolution(Strategy):
    name = "evolution"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.population: list[tuple[Mask, float]] = []  # oldest first

    def ask(self) -> list[Mask]:
        hp = self.ctx.hp
        missing = hp.population - len(self.population)
        if missing > 0:
            out: list[Mask] = []
            for _ in range(missing):  # the initial population in one round
                m = fresh_mask(self, set(out))
                if m is None:
                    break
                out.append(m)
            if out:
                return out
            if not self.population:
                return []
        children = []
        for _ in range(hp.random_batch):
            k = min(hp.tournament, len(self.population))
            picks = torch.randperm(len(self.population), generator=self.gen)[:k].tolist()
            # Best reward wins; among equals the older member.
            parent = max(sorted(picks), key=lambda i: self.population[i][1])
            bit = int(torch.randint(self.n, (1,), generator=self.gen))
            children.append(flip(self.population[parent][0], bit))
        return children

    def tell(self, asked: Sequence[Mask], results: Sequence[Evaluation]) -> list[dict[str, Any]]:
        for r in results:
            self.population.append((r.mask, r.reward))
        del self.population[: max(0, len(self.population) - self.ctx.hp.population)]
        return [{} for _ in results]

    def keep_probabilities(self) -> list[float] | None:
        if not self.population:
            return None
        masks = torch.tensor([m for m, _ in self.population], dtype=torch.float64)
        return masks.mean(0).tolist()

    def _state(self) -> dict[str, Any]:
        return {"population": [[list(m), r] for m, r in self.population]}

    def _load(self, state: dict[str, Any]) -> None:
        self.population = [(tuple(int(b) for b in m), float(r)) for m, r in state["population"]]
