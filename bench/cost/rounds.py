"""Interleaved rounds: the one way things are timed side by side.

Each round calls every side in an order shuffled by a seeded RNG, so a drift in machine
load hits every side alike; the times of one round belong together (a ratio taken within a
round cancels the drift). The cost table's sessions (bench.cost.table) and the ratio
benchmarks (benchmarks.harness) both time through here. Light: no torch (a caller that
times a GPU hands in its `sync`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

Clock = Callable[[], float]
Round = dict[str, float]  # side -> seconds per call, in the order the sides ran


class Bar(Protocol):
    def update(self, n: float = 1) -> bool | None: ...


def _nothing() -> None:
    pass


def timed(
    fn: Callable[[], Any],
    number: int = 1,
    *,
    sync: Callable[[], None] = _nothing,
    clock: Clock = time.perf_counter,
) -> float:
    """Seconds per call of `number` back-to-back calls of `fn`; `sync` waits for queued
    work (a GPU's) before the clock starts and before it stops."""
    sync()
    t0 = clock()
    for _ in range(number):
        fn()
    sync()
    return (clock() - t0) / number


def warm_up(sides: Mapping[str, Callable[[], Any]], rounds: int) -> None:
    """Call every side `rounds` times, untimed, in the order given."""
    for _ in range(rounds):
        for fn in sides.values():
            fn()


def interleaved_rounds(
    sides: Mapping[str, Callable[[], Any]],
    until: Callable[[list[Round]], bool],
    *,
    repeats: Mapping[str, int] | None = None,
    seed: int = 0,
    before_round: Callable[[], None] = _nothing,
    sync: Callable[[], None] = _nothing,
    clock: Clock = time.perf_counter,
    bar: Bar | None = None,
) -> list[Round]:
    """Time rounds until `until(rounds so far)` says stop (asked after each round: there is
    always one). A round runs `before_round`, then times each side (`repeats[side]` calls
    back to back, default 1) in an order shuffled by `seed`, then ticks `bar`."""
    rng, keys, rounds, number = random.Random(seed), list(sides), [], repeats or {}
    while True:
        rng.shuffle(keys)
        before_round()
        rounds.append({k: timed(sides[k], number.get(k, 1), sync=sync, clock=clock) for k in keys})
        if bar is not None:
            bar.update()
        if until(rounds):
            return rounds
