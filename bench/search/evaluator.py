"""Candidate evaluation: held-out accuracy of a mask with weights inherited from the supernet.

Two layers:
  * a score function `(mask, n_images) -> Score`: `SupernetScorer` switches the frozen
    supernet's slots (a 0 slot's SAM is never called, so this IS the materialized network's
    forward), runs BN in eval mode or, optionally, recalibrates BN statistics on K fixed train
    batches per candidate, and scores the first n images of a fixed random subset of the
    held-out split (never test). Under torchrun each rank scores a strided shard and the
    sums are all-reduced, so every rank gets the single-process number.
  * `Evaluator`: the mask -> score cache (a mask is never scored twice on the same images),
    the budget, and successive halving. Strategies only ever see this layer.

SupernetScorer composes a scoring-set source (bench.search.scoring_set), a BN policy
(bench.search.bn_policy) and the prefix cache of block inputs (bench.search.prefix_cache:
over a search's candidates about half the blocks are skipped, no bit of a score changes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from bench.data.decoded import decoded_set
from bench.engine.distributed import all_reduce_sum, dist_info
from bench.models.resnet import SlotResNet
from bench.search.bn_policy import bn_policy
from bench.search.budget import Budget
from bench.search.prefix_cache import PrefixCache, StageCache
from bench.search.scoring_set import CachedSet, PreloadedSet, ScoringSource, StreamedSet
from bench.util.errors import BenchError

__all__ = [
    "Evaluation",
    "Evaluator",
    "Mask",
    "Score",
    "ScoreFn",
    "SupernetScorer",
    "TableScorer",
    "fixed_subset",
    "mask_key",
]

Mask = tuple[int, ...]


def mask_key(mask: Sequence[int]) -> str:
    """The cache and log key of a mask: its bits as a string, e.g. "0110"."""
    return "".join("1" if b else "0" for b in mask)


def fixed_subset(n: int, size: int, seed: int = 0) -> np.ndarray:
    """The first `size` positions (0 = all) of a seeded permutation of range(n).

    Prefixes are themselves random subsets, so halving rungs are nested prefixes.
    """
    order = np.random.default_rng(seed).permutation(n)
    return order if size <= 0 or size >= n else order[:size]


@dataclass(frozen=True)
class Score:
    """Top-1 accuracy (percent) and mean cross-entropy on n images."""

    top1: float
    loss: float
    n: int


class ScoreFn(Protocol):
    """What the evaluator needs from a scorer: the full set size and a pure score."""

    size: int

    def __call__(self, mask: Mask, n_images: int) -> Score: ...


@dataclass(frozen=True)
class Evaluation:
    """One scoring act (or cache hit) of one asked mask."""

    index: int  # position in the list the strategy asked for
    mask: Mask
    top1: float
    loss: float
    n_images: int
    cached: bool
    cost: int  # images charged to the budget (0 when cached)
    final: bool  # scored on the whole scoring set (eligible to become the ticket)
    rung: int = 0
    reward: float = float("nan")


# --------------------------------------------------------------------------- the cache layer


@dataclass
class Evaluator:
    """Cache + budget + successive halving over a score function."""

    score_fn: ScoreFn
    budget: Budget
    cache: dict[tuple[str, int], Score] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.score_fn.size

    def known(self, mask: Sequence[int], n_images: int | None = None) -> bool:
        """Whether `mask` was already scored on n_images (default: the whole set)."""
        return (mask_key(mask), n_images or self.size) in self.cache

    def _one(self, index: int, mask: Mask, n: int, rung: int) -> Evaluation | None:
        key = (mask_key(mask), n)
        hit = self.cache.get(key)
        if hit is None:
            if not self.budget.can_afford(n):
                return None
            hit = self.score_fn(mask, n)
            self.budget.charge(n)
            self.cache[key] = hit
            cached, cost = False, n
        else:
            cached, cost = True, 0
        return Evaluation(index, mask, hit.top1, hit.loss, n, cached, cost, n == self.size, rung)

    def evaluate(self, masks: Sequence[Sequence[int]]) -> list[Evaluation]:
        """Score each mask on the whole set, in order; stop at the first the budget can't pay."""
        out = []
        for i, m in enumerate(masks):
            ev = self._one(i, tuple(int(b) for b in m), self.size, 0)
            if ev is None:
                break
            out.append(ev)
        return out

    def rung_sizes(self, eta: int, min_images: int) -> list[int]:
        """min_images, x eta, ... capped by (and always ending at) the whole set."""
        sizes, n = [], max(1, min(min_images, self.size))
        while n < self.size:
            sizes.append(n)
            n *= eta
        return [*sizes, self.size]

    def halving(
        self,
        masks: Sequence[Sequence[int]],
        key: Callable[[Evaluation], float],
        *,
        eta: int = 3,
        min_images: int = 100,
    ) -> tuple[list[Evaluation], list[Evaluation]]:
        """Successive halving: all masks on the first rung, the best 1/eta promoted each rung.

        `key` ranks evaluations (higher is better; ties keep the earlier mask). Returns
        (every scoring act in order, each evaluated mask's highest-rung evaluation in ask
        order). Stops where the budget runs out; only last-rung evaluations are `final`.
        """
        masks = [tuple(int(b) for b in m) for m in masks]
        acts: list[Evaluation] = []
        latest: dict[int, Evaluation] = {}
        alive = list(range(len(masks)))
        for rung, n in enumerate(self.rung_sizes(eta, min_images)):
            scored = []
            for i in alive:
                ev = self._one(i, masks[i], n, rung)
                if ev is None:
                    return acts, [latest[j] for j in sorted(latest)]
                acts.append(ev)
                latest[i] = ev
                scored.append(ev)
            if n == self.size:
                break
            keep = max(1, math.ceil(len(scored) / eta))
            ranked = sorted(scored, key=lambda e: (-key(e), e.index))
            alive = sorted(e.index for e in ranked[:keep])
        return acts, [latest[j] for j in sorted(latest)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget.state_dict(),
            "cache": [[k, n, s.top1, s.loss, s.n] for (k, n), s in self.cache.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.budget.load_state_dict(state["budget"])
        self.cache = {
            (k, int(n)): Score(float(t), float(lo), int(m)) for k, n, t, lo, m in state["cache"]
        }


def with_reward(ev: Evaluation, reward: float) -> Evaluation:
    return replace(ev, reward=reward)


# --------------------------------------------------------------------------- score functions


class TableScorer:
    """Scores looked up in a table {mask key: top1} (benchmarks and toy problems)."""

    def __init__(self, table: dict[str, float], size: int = 1) -> None:
        self.table = table
        self.size = size
        self.calls = 0

    def __call__(self, mask: Mask, n_images: int) -> Score:
        self.calls += 1
        return Score(float(self.table[mask_key(mask)]), 0.0, n_images)


def _shard(n: int, rank: int, world: int) -> int:
    """How many of positions 0..n-1 fall on `rank` when strided over `world` ranks."""
    return len(range(rank, n, world))


class SupernetScorer:
    """Held-out top-1 of a mask with the supernet's inherited weights (frozen, no grad).

    Composes three parts, each in its own module: where the images come from
    (bench.search.scoring_set: preloaded when this rank's share needs at most `preload_mb`
    MiB, else read from its decode-once cache or, without one, streamed with `workers`
    DataLoader processes; `log` says when the cache is built), how BN statistics are taken
    (bench.search.bn_policy: fixed; recalibrated on `recalib_batches`, K train batches;
    folded with channels_last when `fast`) and the prefix cache of block inputs
    (bench.search.prefix_cache, bounded by `cache_mb`, 0 = off; used when the set is in
    memory and BN is not recalibrated). scoring_set: the fixed held-out subset, in its
    fixed order (eval transforms). The supernet must not change while the scorer is in
    use: its block inputs are cached.
    """

    def __init__(
        self,
        net: SlotResNet,
        scoring_set: Dataset,
        device: torch.device | str,
        *,
        batch_size: int = 500,
        recalib_batches: Sequence[torch.Tensor] | None = None,
        preload_mb: int = 4096,
        workers: int = 0,
        distributed: bool | None = None,
        cache_mb: int = 1024,
        fast: bool = False,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        recalib = [b.to(self.device) for b in recalib_batches or []]
        self.bn = bn_policy(self.net, recalib, fast)
        self.size = len(scoring_set)
        if self.size == 0:
            raise BenchError("the held-out scoring set is empty; pass a larger held-out split")
        info = dist_info()
        self.shard = info.enabled if distributed is None else distributed and info.enabled
        self.rank, self.world = (info.rank, info.world_size) if self.shard else (0, 1)
        local = Subset(scoring_set, list(range(self.rank, self.size, self.world)))
        self.batch_size = batch_size
        self.source = _source(local, self.device, batch_size, preload_mb, workers, log)
        shared = self.source.in_memory and self.bn.shares_work and cache_mb > 0
        self.prefix = PrefixCache(self.net, cache_mb * 2**20) if shared else None

    @property
    def stage_cache(self) -> StageCache | None:
        return self.prefix.stages if self.prefix is not None else None

    @property
    def blocks_skipped(self) -> int:
        """Blocks not run thanks to the prefix cache (all batches so far)."""
        return self.prefix.blocks_skipped if self.prefix is not None else 0

    def clear_cache(self) -> None:
        """Forget every cached block input (e.g. after changing the supernet's weights)."""
        if self.prefix is not None:
            self.prefix.clear()

    def _logits(self, mask: Mask, span: tuple[int, int], x: torch.Tensor) -> torch.Tensor:
        net, x = self.bn.runner, self.bn.prepare(x)
        return net(x) if self.prefix is None else self.prefix.logits(net, mask, span, x)

    def __call__(self, mask: Mask, n_images: int) -> Score:
        n_images = min(n_images, self.size)
        mask = tuple(int(b) for b in mask)
        self.bn.set_mask(mask)
        with self.bn.scoring():
            local_n = _shard(n_images, self.rank, self.world)
            with torch.inference_mode():
                loss = torch.zeros((), dtype=torch.float64, device=self.device)
                correct = torch.zeros((), dtype=torch.int64, device=self.device)
                for span, x, y in self.source.batches(local_n):
                    logits = self._logits(mask, span, x).float()
                    loss += F.cross_entropy(logits, y, reduction="sum").double()
                    correct += logits.argmax(1).eq(y).sum()
            sums = torch.stack([loss.clone(), correct.double().clone()])
        if self.shard:
            all_reduce_sum(sums)
        total_loss, total_correct = sums.tolist()
        return Score(100.0 * total_correct / n_images, total_loss / n_images, n_images)


def _source(
    data: Dataset, device: torch.device, batch_size: int, preload_mb: int, workers: int,
    log: Callable[[str], None] | None,
) -> ScoringSource:  # fmt: skip
    """Preloaded when this rank's share needs at most `preload_mb` MiB, else read from its
    decode-once cache (a file-backed set) or streamed (bench.search.scoring_set)."""
    decoded = decoded_set(data, workers=workers, log=log)
    if decoded is not None:
        first = decoded.batch(0, 1)[0][0]
    else:
        first = data[0][0]
    need_mb = len(data) * first.numel() * first.element_size() / 2**20  # type: ignore[arg-type]
    if need_mb <= preload_mb:
        if decoded is not None:
            return PreloadedSet.of_decoded(decoded, batch_size, device)
        return PreloadedSet.load(data, batch_size, workers, device)
    if decoded is not None:
        return CachedSet(decoded, batch_size, device)
    return StreamedSet(data, batch_size, workers, device)
