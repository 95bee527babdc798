"""The share of the full-SAM gain a ticket keeps: a secondary column of the leaderboard,
defined only where the SAM itself helps beyond seed noise.

    share = g(v_ticket) / g(v_full),  g(v) = o * (v - v_none),  o = +1 (higher is better) or -1,

which is (v - v_none) / (v_full - v_none) with the gain measured in the metric's direction.
The means are taken over the seeds the ticket and both controls finished. The arms of one
seed are paired, so the full-vs-none gap is within seed noise when |mean_s(full_s - none_s)|
<= std_s(full_s - none_s) (noise that moves all arms of a seed alike cancels in the pairs).
NaN, with its reason, under 2 shared seeds (noise cannot be judged), within noise, or when
full is worse than none beyond noise (no gain to share).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["GainShare", "gain_share"]

NAN = float("nan")


@dataclass(frozen=True)
class GainShare:
    """A share of gain, the seeds its means used, and why it is NaN when it is."""

    value: float
    seeds: tuple[int, ...]
    reason: str | None = None


def _g(x: float) -> str:
    return f"{x:.4g}"


def gain_share(
    ticket: Mapping[int, float],
    full: Mapping[int, float],
    none: Mapping[int, float],
    higher_is_better: bool,
) -> GainShare:
    """Share of the full-SAM gain the ticket keeps, from per-seed values {seed: value}."""
    seeds = tuple(sorted(set(ticket) & set(full) & set(none)))
    if not seeds:
        return GainShare(NAN, seeds, "no seed shared by the ticket and its full and none controls")
    if len(seeds) < 2:
        return GainShare(
            NAN, seeds, f"1 shared seed ({seeds[0]}): seed noise cannot be judged (needs 2 or more)"
        )
    t, f, n = ([src[s] for s in seeds] for src in (ticket, full, none))
    sign = 1.0 if higher_is_better else -1.0
    mean_t, mean_f, mean_n = statistics.fmean(t), statistics.fmean(f), statistics.fmean(n)
    gain = sign * (mean_f - mean_n)
    noise = statistics.stdev(sign * (a - b) for a, b in zip(f, n))
    if abs(gain) <= noise:
        return GainShare(
            NAN,
            seeds,
            f"full-vs-none gap {_g(abs(gain))} is within seed noise (std of the per-seed gaps "
            f"{_g(noise)})",
        )
    if gain < 0:
        return GainShare(
            NAN,
            seeds,
            f"full is worse than none by {_g(-gain)} (beyond seed noise): no gain to share",
        )
    # + 0.0 turns the none control's -0.0 (lower-is-better metrics) into 0.0
    return GainShare(sign * (mean_t - mean_n) / gain + 0.0, seeds)
