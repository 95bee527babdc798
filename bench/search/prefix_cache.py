"""Shared work between candidates: block inputs cached by mask prefix.

The input of block b depends only on the first b mask bits, so the stem output and each
block's input are kept in a byte-bounded LRU keyed by (block index, mask prefix, batch
span); with a stateful SAM (DIA) only each stage's input, since its state flows within a
stage. A candidate that agrees with an earlier one on its first b bits starts at block b.
This changes no bit of any score (the same operations on the same tensors). It needs the
same batch for the same span every time (a scoring set in memory) and block inputs that do
not depend on later bits (fixed BN statistics).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from bench.models.resnet import SlotResNet

__all__ = ["PrefixCache", "StageCache"]

Mask = tuple[int, ...]


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


class PrefixCache:
    """Runs a network on a batch from the deepest cached block input of a mask's prefix."""

    def __init__(self, net: SlotResNet, max_bytes: int) -> None:
        self.stages = StageCache(max_bytes)
        starts = np.cumsum([0, *net.spec.layers[:-1]]).tolist()
        stateful = any(getattr(m, "stateful", False) for m in net.sam_modules())
        self._stage_starts = set(starts)
        cuts = set(starts if stateful else range(len(net.slot_ids))) - {0}
        self._cuts = [0, *sorted(cuts)]  # cached points: each block's input, or each stage's
        self.blocks_skipped = 0  # blocks not run thanks to the cache (all batches so far)

    def logits(
        self, net: SlotResNet, mask: Mask, span: tuple[int, int], x: torch.Tensor
    ) -> torch.Tensor:
        """`net(x)` for the batch at `span` of the scoring set, with `mask` set on `net`."""
        start, h = self._resume(mask, span)
        self.blocks_skipped += start
        if h is None:
            h = net.forward_stem(x)
            self.stages.put((0, (), span), h)
        blocks, state = net.blocks(), {}
        cuts = set(self._cuts)
        for j in range(start, len(blocks)):
            if j in self._stage_starts:
                state = {}  # recurrent SAM state (DIA) flows only within a stage
            h = blocks[j](h, state)
            if j + 1 in cuts:
                self.stages.put((j + 1, mask[: j + 1], span), h)
        return net.forward_head(h)

    def _resume(self, mask: Mask, span: tuple[int, int]) -> tuple[int, torch.Tensor | None]:
        """(block index, its cached input) of the deepest cached point of `mask`'s prefix;
        the shallower cached points of that prefix are marked used too (kept longest)."""
        cuts = self._cuts
        for i in range(len(cuts) - 1, -1, -1):
            h = self.stages.get((cuts[i], mask[: cuts[i]], span))
            if h is not None:
                for b in cuts[:i]:
                    self.stages.touch((b, mask[:b], span))
                return cuts[i], h
        return 0, None

    def clear(self) -> None:
        """Forget every cached block input (e.g. after changing the network's weights)."""
        self.stages.clear()
