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

Shared work between candidates (SupernetScorer): the input of block b depends only on the
first b mask bits, so the stem output and each block's input are kept in a byte-bounded
LRU cache keyed by that mask prefix (with a stateful SAM, DIA, only each stage's input:
its state flows within a stage); a candidate that agrees with an earlier one on its first
b bits starts at block b. This changes no bit of any score (the same operations on the
same tensors). Over a search's candidates about half the blocks are skipped. `fast=True`
also folds every backbone BatchNorm into its convolution and runs channels_last: faster
again, but rounded differently from the plain network (losses agree to ~1e-7), so opt-in.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils.data import DataLoader, Dataset, Subset

from bench.engine.distributed import all_reduce_sum, dist_info
from bench.models.resnet import SlotResNet
from bench.search.budget import Budget
from bench.util.errors import BenchError

__all__ = [
    "Evaluation",
    "Evaluator",
    "Mask",
    "Score",
    "ScoreFn",
    "StageCache",
    "SupernetScorer",
    "TableScorer",
    "fixed_subset",
    "fold_batchnorm",
    "mask_key",
]

Mask = tuple[int, ...]
Batch = tuple[tuple[int, int], torch.Tensor, torch.Tensor]


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


class StageCache:
    """LRU of block inputs, keyed by (block index, mask prefix, batch span), bounded in
    bytes. Block b's input depends only on the first b mask bits."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = self.misses = 0
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, key: tuple) -> torch.Tensor | None:
        hit = self._items.get(key)
        if hit is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return hit

    def touch(self, key: tuple) -> None:
        """Mark `key` as just used, when cached."""
        if key in self._items:
            self._items.move_to_end(key)

    def put(self, key: tuple, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.max_bytes or key in self._items:
            return
        self._items[key] = value
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old.numel() * old.element_size()

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = self.hits = self.misses = 0


def fold_batchnorm(net: SlotResNet) -> SlotResNet:
    """A copy of `net` (eval mode) with each backbone BatchNorm folded into its convolution:
    the stem, every block's convN -> bnN and every downsample (conv, bn). SAMs are kept."""
    net = copy.deepcopy(net).eval()
    in_sams = {id(m) for sam in net.sam_modules() for m in sam.modules()}
    for module in list(net.modules()):
        if id(module) in in_sams:
            continue
        for i in (1, 2, 3):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{i}", nn.Identity())
        if isinstance(module, nn.Sequential):
            for j in range(len(module) - 1):
                if isinstance(module[j], nn.Conv2d) and isinstance(module[j + 1], nn.BatchNorm2d):
                    module[j] = fuse_conv_bn_eval(module[j], module[j + 1])
                    module[j + 1] = nn.Identity()
    return net


def _shard(n: int, rank: int, world: int) -> int:
    """How many of positions 0..n-1 fall on `rank` when strided over `world` ranks."""
    return len(range(rank, n, world))


class SupernetScorer:
    """Held-out top-1 of a mask with the supernet's inherited weights (frozen, no grad).

    scoring_set: the fixed held-out subset, in its fixed order (eval transforms).
    recalib_batches: K train batches (inputs only); when given, every candidate's BN
    statistics are re-estimated on them (cumulative average) and restored afterwards.
    The set is decoded into memory once when it needs at most `preload_mb` MiB on this
    rank, else streamed through a DataLoader with `workers` processes per candidate.
    cache_mb: bound of the stage-output cache (module docstring; used when the set is
    preloaded and BN is not recalibrated; 0 = off). fast: fold BN and run channels_last
    (module docstring; not with recalibration). The supernet must not change while the
    scorer is in use: its stage outputs are cached.
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
    ) -> None:
        if fast and recalib_batches:
            raise BenchError("fast evaluation folds fixed BN statistics: not with recalibration")
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.size = len(scoring_set)
        if self.size == 0:
            raise BenchError("the held-out scoring set is empty; pass a larger held-out split")
        info = dist_info()
        self.shard = info.enabled if distributed is None else distributed and info.enabled
        self.rank, self.world = (info.rank, info.world_size) if self.shard else (0, 1)
        local = list(range(self.rank, self.size, self.world))
        self.local_set = Subset(scoring_set, local)
        self.batch_size = batch_size
        self.workers = workers
        self.recalib = [b.to(self.device) for b in recalib_batches or []]
        self._bn = [m for m in self.net.modules() if isinstance(m, _BatchNorm)]
        self._bn_saved = [
            (
                m.running_mean.clone(),
                m.running_var.clone(),
                m.num_batches_tracked.clone(),
                m.momentum,
            )
            for m in self._bn
            if m.track_running_stats
        ]
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        first = scoring_set[0][0]
        need_mb = len(local) * first.numel() * first.element_size() / 2**20
        if need_mb <= preload_mb:
            self._preload()
        self._fast = fold_batchnorm(self.net) if fast else None
        if self._fast is not None:
            self._fast.to(memory_format=torch.channels_last)
        shared = self.x is not None and not self.recalib and cache_mb > 0
        self.stage_cache = StageCache(cache_mb * 2**20) if shared else None
        # Cached points: each block's input, or only each stage's with a stateful SAM.
        starts = np.cumsum([0, *self.net.spec.layers[:-1]]).tolist()
        stateful = any(getattr(m, "stateful", False) for m in self.net.sam_modules())
        self._stage_starts = set(starts)
        self._cuts = set(starts if stateful else range(len(self.net.slot_ids))) - {0}
        self.blocks_skipped = 0  # blocks not run thanks to the cache (all batches so far)

    def _loader(self, data: Dataset) -> DataLoader:
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            # Its own generator: never draw worker seeds from the global torch RNG.
            generator=torch.Generator().manual_seed(0),
        )

    def _preload(self) -> None:
        xs, ys = [], []
        for x, y in self._loader(self.local_set):
            xs.append(x)
            ys.append(torch.as_tensor(y))
        self.x = torch.cat(xs).to(self.device)
        self.y = torch.cat(ys).to(self.device)

    def _batches(self, local_n: int) -> Iterator[Batch]:
        """(span, inputs, labels) per batch; span: positions s..e of the local scoring set."""
        if self.x is not None and self.y is not None:
            for s in range(0, local_n, self.batch_size):
                e = min(s + self.batch_size, local_n)
                yield (s, e), self.x[s:e], self.y[s:e]
        else:
            part = Subset(self.local_set, range(local_n))
            s = 0
            for x, y in self._loader(part):
                span, s = (s, s + len(x)), s + len(x)
                dev = self.device
                yield span, x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)

    def _logits(self, mask: Mask, span: tuple[int, int], x: torch.Tensor) -> torch.Tensor:
        """The network's output on batch `x`, resuming from the deepest cached block input."""
        net = self._fast if self._fast is not None else self.net
        if self._fast is not None:
            x = x.contiguous(memory_format=torch.channels_last)
        cache = self.stage_cache
        if cache is None:
            return net(x)
        start, h = self._resume(mask, span)
        self.blocks_skipped += start
        if h is None:
            h = net.forward_stem(x)
            cache.put((0, (), span), h)
        blocks, state = net.blocks(), {}
        for j in range(start, len(blocks)):
            if j in self._stage_starts:
                state = {}  # recurrent SAM state (DIA) flows only within a stage
            h = blocks[j](h, state)
            if j + 1 in self._cuts:
                cache.put((j + 1, mask[: j + 1], span), h)
        return net.forward_head(h)

    def _resume(self, mask: Mask, span: tuple[int, int]) -> tuple[int, torch.Tensor | None]:
        """(block index, its cached input) of the deepest cached point of `mask`'s prefix;
        the shallower cached points of that prefix are marked used too (kept longest)."""
        assert self.stage_cache is not None
        cuts = [0, *sorted(self._cuts)]
        for i in range(len(cuts) - 1, -1, -1):
            h = self.stage_cache.get((cuts[i], mask[: cuts[i]], span))
            if h is not None:
                for b in cuts[:i]:
                    self.stage_cache.touch((b, mask[:b], span))
                return cuts[i], h
        return 0, None

    def clear_cache(self) -> None:
        """Forget every cached stage output (e.g. after changing the supernet's weights)."""
        if self.stage_cache is not None:
            self.stage_cache.clear()

    def _recalibrate(self) -> None:
        for m in self._bn:
            if m.track_running_stats:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the K batches
        self.net.train()
        with torch.no_grad():
            for xb in self.recalib:
                self.net(xb)
        self.net.eval()

    def _restore_bn(self) -> None:
        tracked = [m for m in self._bn if m.track_running_stats]
        for m, (mean, var, count, momentum) in zip(tracked, self._bn_saved):
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)
            m.momentum = momentum

    def __call__(self, mask: Mask, n_images: int) -> Score:
        n_images = min(n_images, self.size)
        mask = tuple(int(b) for b in mask)
        self.net.set_mask(mask)
        if self._fast is not None:
            self._fast.set_mask(mask)
        try:
            if self.recalib:
                self._recalibrate()
            local_n = _shard(n_images, self.rank, self.world)
            with torch.inference_mode():
                loss = torch.zeros((), dtype=torch.float64, device=self.device)
                correct = torch.zeros((), dtype=torch.int64, device=self.device)
                for span, x, y in self._batches(local_n):
                    logits = self._logits(mask, span, x).float()
                    loss += F.cross_entropy(logits, y, reduction="sum").double()
                    correct += logits.argmax(1).eq(y).sum()
            sums = torch.stack([loss.clone(), correct.double().clone()])
        finally:
            if self.recalib:
                self._restore_bn()
        if self.shard:
            all_reduce_sum(sums)
        total_loss, total_correct = sums.tolist()
        return Score(100.0 * total_correct / n_images, total_loss / n_images, n_images)
