"""Greedy backward elimination: from the full mask, drop the slot whose removal costs least.

Round 0 scores the full mask; each later round scores every mask with one more slot off
and moves to the best (highest reward; ties drop the earliest slot). It walks the whole
path down to the empty mask or until the budget runs out; the ticket is the best mask seen
anywhere on the path (the loop tracks it), not necessarily the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.search.evaluator import Evaluation, Mask
from bench.search.strategies.base import STRATEGIES, Strategy


@STRATEGIES.register("greedy")
class GreedyElimination(Strategy):
    name = "greedy"

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.current: Mask | None = None
        self.current_reward: float | None = None

    def ask(self) -> list[Mask]:
        if self.current is None:
            return [(1,) * self.n]
        cur = self.current
        return [cur[:i] + (0,) + cur[i + 1 :] for i, b in enumerate(cur) if b]

    def tell(self, asked: Sequence[Mask], results: Sequence[Evaluation]) -> list[dict[str, Any]]:
        if results:
            best = max(results, key=lambda r: (r.reward, -r.index))
            self.current, self.current_reward = best.mask, best.reward
        return [{} for _ in results]

    def step_info(self) -> dict[str, Any]:
        return {"current_reward": self.current_reward}

    def keep_probabilities(self) -> list[float]:
        return [1.0] * self.n if self.current is None else [float(b) for b in self.current]

    def _state(self) -> dict[str, Any]:
        return {
            "current": list(self.current) if self.current is not None else None,
            "current_reward": self.current_reward,
        }

    def _load(self, state: dict[str, Any]) -> None:
        cur = state["current"]
        self.current = tuple(int(b) for b in cur) if cur is not None else None
        self.current_reward = state["current_reward"]
