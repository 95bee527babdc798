"""bench.cost.rounds, the one interleaved timer (cost sessions and benchmarks): each round
times every side in a seeded shuffled order, a side's time is per call, the caller's rule
says when to stop. A fake clock that only the sides move keeps every number exact."""

from __future__ import annotations

import random

from bench.cost.rounds import interleaved_rounds, timed, warm_up


class World:
    """A clock that moves only when a side runs, and a log of what ran."""

    def __init__(self) -> None:
        self.now, self.log = 0.0, []

    def clock(self) -> float:
        return self.now

    def side(self, name: str, cost: float):
        def run() -> None:
            self.now += cost
            self.log.append(name)

        return run


def test_each_round_times_every_side_in_a_seeded_shuffled_order() -> None:
    w = World()
    sides = {k: w.side(k, 1.0) for k in "abcd"}
    rounds = interleaved_rounds(sides, lambda done: len(done) == 6, seed=3, clock=w.clock)
    rng, keys, expected = random.Random(3), list("abcd"), []
    for _ in range(6):
        rng.shuffle(keys)
        expected.append(list(keys))
    assert [list(r) for r in rounds] == expected  # a round lists the sides in the order run
    assert w.log == [k for order in expected for k in order]
    assert len({"".join(o) for o in expected}) > 1  # the order really changes


def test_times_are_seconds_per_call_of_each_sides_repeats() -> None:
    w = World()
    sides = {"fast": w.side("fast", 0.25), "slow": w.side("slow", 2.0)}
    rounds = interleaved_rounds(sides, lambda done: len(done) == 3, repeats={"fast": 8},
                                clock=w.clock)  # fmt: skip
    assert rounds == [{"fast": 0.25, "slow": 2.0}] * 3
    assert w.log.count("fast") == 24 and w.log.count("slow") == 3


def test_the_stopping_rule_is_asked_after_every_round() -> None:
    w, asked = World(), []
    sides = {"a": w.side("a", 1.0)}

    def until(done: list) -> bool:
        asked.append(len(done))
        return True

    assert len(interleaved_rounds(sides, until, clock=w.clock)) == 1  # always one round
    assert asked == [1]


def test_before_round_sync_and_bar_come_at_their_places() -> None:
    w, events = World(), []

    class Bar:
        def update(self, n: float = 1) -> None:
            events.append("bar")

    sides = {k: w.side(k, 1.0) for k in "ab"}
    w.log = events
    interleaved_rounds(sides, lambda done: len(done) == 2, before_round=lambda: events.append(
        "gc"), sync=lambda: events.append("sync"), clock=w.clock, bar=Bar())  # fmt: skip
    one = ["gc", "sync", "?", "sync", "sync", "?", "sync", "bar"]
    got = ["?" if e in "ab" else e for e in events]
    assert got == one + one


def test_timed_and_warm_up() -> None:
    w = World()
    assert timed(w.side("a", 0.5), 4, clock=w.clock) == 0.5 and w.log == ["a"] * 4
    w = World()
    warm_up({"b": w.side("b", 1.0), "a": w.side("a", 1.0)}, 2)
    assert w.log == ["b", "a", "b", "a"]  # every side per round, in the order given
