"""The strategy contract (ask/tell) and its registry.

A strategy proposes masks (`ask`) and learns from their scored rewards (`tell`); the search
loop scores every ask with the one shared `Evaluator`, charges the one budget, logs each
evaluation and checkpoints after every tell. So strategies never touch data, budget or
files, and compare fairly. All their randomness comes from their own torch.Generator,
which is part of their state: a resumed search draws exactly what an uninterrupted one does.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from bench.search.evaluator import Evaluation, Mask
from bench.search.hparams import SearchHParams
from bench.util.registry import Registry

__all__ = ["STRATEGIES", "SearchContext", "Strategy", "derived_seed", "flip"]


def derived_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed per (stream, seed)."""
    digest = hashlib.sha256(f"search:{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def flip(mask: Mask, i: int) -> Mask:
    """`mask` with bit i inverted."""
    return mask[:i] + (1 - mask[i],) + mask[i + 1 :]


@dataclass(frozen=True)
class SearchContext:
    """What a strategy may know: the slots, its settings, its seed, and what was scored."""

    n_slots: int
    stage_sizes: tuple[int, ...]
    hp: SearchHParams
    seed: int
    known: Callable[[Sequence[int]], bool] = lambda _mask: False


class Strategy(ABC):
    """Ask for masks, be told their evaluations; `ask` returning [] ends the search."""

    name: ClassVar[str]
    # Whether the loop may score this strategy's asks with successive halving (--halving):
    # only for strategies that can use low-fidelity scores of the masks they drop.
    supports_halving: ClassVar[bool] = False

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.gen = torch.Generator().manual_seed(derived_seed(ctx.seed, self.name))

    @property
    def n(self) -> int:
        return self.ctx.n_slots

    @abstractmethod
    def ask(self) -> list[Mask]:
        """The next masks to evaluate ([] = finished)."""

    @abstractmethod
    def tell(self, asked: Sequence[Mask], results: Sequence[Evaluation]) -> list[dict[str, Any]]:
        """Learn from the evaluations of `asked` (with `reward` set; possibly fewer than asked
        when the budget ran out). Returns extra log fields per result (e.g. log-probability)."""

    def step_info(self) -> dict[str, Any]:
        """Extra fields for the per-step log (e.g. the controller's loss)."""
        return {}

    def keep_probabilities(self) -> list[float] | None:
        """Per-slot probability that the strategy keeps the slot now (for the plot)."""
        return None

    def preferred_mask(self) -> Mask | None:
        """The mask the strategy itself prefers now, if it has a model of one (reinforce: the
        policy's argmax); recorded in the ticket's provenance beside the best sampled mask."""
        return None

    def random_mask(self) -> Mask:
        """A uniformly random mask from the strategy's generator."""
        return tuple(int(b) for b in torch.randint(0, 2, (self.n,), generator=self.gen).tolist())

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), **self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self._load(state)

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: dict[str, Any]) -> None:
        """Restore what `_state` saved (stateless strategies keep only their generator)."""
        return None


STRATEGIES: Registry[type[Strategy]] = Registry("search strategy")
