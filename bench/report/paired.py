"""Paired differences of a ticket to a control, their Student-t intervals, and the verdicts
on the paper's three claims (a ticket keeps accuracy, is cheaper, is faster).

Seed s of every arm starts from pretraining seed s and trains on the same seeded stream,
so the arms are compared pairwise by seed. Over the seeds S both arms finished,
    d_s = o * (v_ticket,s - v_control,s),   o = +1 where higher is better, -1 where lower,
so a positive difference always means "the ticket is better". The mean of d comes with its
sample std and a 95% Student-t interval, mean +- t(0.975, n-1) * std / sqrt(n); the
relative form divides by |mean over S of v_control| (%), interval ends included. With one
shared seed there is a value but no interval (and a reason); with none, no value.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from scipy.stats import t as student_t

__all__ = [
    "CONFIDENCE",
    "Paired",
    "accuracy_verdict",
    "cheaper_verdict",
    "latency_verdict",
    "paired_difference",
]

CONFIDENCE = 0.95
NAN = float("nan")


@dataclass(frozen=True)
class Paired:
    """A ticket's paired difference to one control (metric units and % of the control)."""

    diff: float  # mean of d_s; NaN when no seed is shared
    std: float  # sample std of d_s (ddof=1); NaN under 2 seeds
    lo: float | None  # the 95% t-interval of the mean; None under 2 seeds
    hi: float | None
    rel: float  # 100 * diff / |control mean|, NaN when that mean is 0
    rel_lo: float | None
    rel_hi: float | None
    seeds: tuple[int, ...]
    reason: str | None = None  # why the value or its interval is missing

    @property
    def n(self) -> int:
        return len(self.seeds)


def _pct(x: float | None, scale: float) -> float | None:
    return None if x is None else 100.0 * x / scale


def paired_difference(
    ticket: Mapping[int, float], control: Mapping[int, float], higher_is_better: bool
) -> Paired:
    """The paired difference over the seeds both {seed: value} maps hold."""
    seeds = tuple(sorted(set(ticket) & set(control)))
    if not seeds:
        return Paired(NAN, NAN, None, None, NAN, None, None, seeds, "no shared seed")
    o = 1.0 if higher_is_better else -1.0
    d = [o * (ticket[s] - control[s]) for s in seeds]
    mean = statistics.fmean(d) + 0.0  # + 0.0: no -0.0 in the tables
    lo = hi = None
    std, reason = NAN, f"1 shared seed ({seeds[0]}): no interval (needs 2 or more)"
    if len(d) > 1:
        std, reason = statistics.stdev(d), None
        half = float(student_t.ppf(0.5 + CONFIDENCE / 2, len(d) - 1)) * std / math.sqrt(len(d))
        lo, hi = mean - half, mean + half
    scale = abs(statistics.fmean(control[s] for s in seeds))
    if scale == 0:
        reason = reason or "the control's mean is 0: no relative difference"
        return Paired(mean, std, lo, hi, NAN, None, None, seeds, reason)
    rel = 100.0 * mean / scale
    return Paired(mean, std, lo, hi, rel, _pct(lo, scale), _pct(hi, scale), seeds, reason)


def accuracy_verdict(p: Paired, tolerance_pct: float) -> str:
    """ "keeps" when the relative interval's lower end is >= -tolerance, "loses" when its
    upper end is < -tolerance, otherwise (or without an interval) "undecided"."""
    if p.rel_lo is None or p.rel_hi is None:
        return "undecided"
    if p.rel_lo >= -tolerance_pct:
        return "keeps"
    return "loses" if p.rel_hi < -tolerance_pct else "undecided"


def cheaper_verdict(ticket: float | None, full: float | None) -> str | None:
    """From exact counts (parameters, FLOPs): "cheaper" or "not cheaper"; None when one is
    missing."""
    if ticket is None or full is None:
        return None
    return "cheaper" if ticket < full else "not cheaper"


def latency_verdict(lo: float | None, hi: float | None) -> str | None:
    """From the side-by-side session's interval of the ticket/full latency ratio: "faster"
    only when it lies below 1, "slower" above 1, else "undecided"; None without one."""
    if lo is None or hi is None:
        return None
    if hi < 1:
        return "faster"
    return "slower" if lo > 1 else "undecided"
