"""Cost of several networks measured in ONE session, side by side, and stored for reuse.

A result's "latency saved" is a ratio of two medians. Timed alone, minutes apart, each
network sees a different machine (load, clocks, caches) and the ratio is noise. Here every
network of a session is built in one process and timed in interleaved rounds (one pass each,
shuffled order), until the median of each is known within a tolerance; the ratios stored
are taken within that session. Sessions are kept as small JSON files under
`out_root/costs/`, so the controls of a ticket (full, none) reuse the ticket's session.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from bench.cost.measure import Cost, count_flops, count_params, device_name
from bench.cost.rounds import Round, interleaved_rounds, warm_up
from bench.util.fingerprint import value_sha256
from bench.util.io import atomic_write_json, read_json
from bench.util.progress import show_progress

__all__ = [
    "Arch",
    "Timing",
    "median_ci_rel",
    "measure_cost",
    "measure_costs",
    "measure_latencies",
    "ratio_ci",
    "measure_models",
    "measure_session",
    "session_costs",
]

CONFIDENCE = 0.95
COSTS_DIR = "costs"


@dataclass(frozen=True)
class Arch:
    """One network of a measurement session."""

    key: str  # architecture checksum, e.g. f"{task_model_tag}:{ticket.checksum}"
    name: str  # human label (ticket name)
    kept: int  # number of active SAMs (for the inversion flag)
    build: Callable[[], nn.Module]  # random weights are fine: cost does not depend on them


@dataclass(frozen=True)
class Timing:
    """Outcome of one interleaved timing session."""

    median_ms: dict[str, float]
    ci_rel: dict[str, float]  # half-width of the ~95% CI of the median / the median
    rounds: int
    seconds: float  # wall time of warm-up and rounds
    tolerance: float
    # Each model's time per round, in round order: round r of two models is a pair.
    times_ms: dict[str, list[float]] = field(default_factory=dict)

    def converged(self, key: str) -> bool:
        return self.ci_rel[key] <= self.tolerance

    @property
    def all_converged(self) -> bool:
        return all(self.converged(k) for k in self.ci_rel)


# ---- the stopping rule -------------------------------------------------------------------
@cache
def ci_rank(n: int) -> int:
    """Largest j with P(j <= B <= n-j) >= 95%, B ~ Binomial(n, 1/2); 0 when none exists.

    [x_(j), x_(n+1-j)] (1-based order statistics) then covers the median with >= 95%
    probability whatever the distribution of the times.
    """
    tail = (1 - CONFIDENCE) / 2
    if n > 200:  # normal approximation; the exact sum below would cost O(n) big integers
        return max(0, math.floor(n / 2 - 1.959964 * math.sqrt(n) / 2))
    total, cdf, j = 2**n, 0, 0
    while True:
        cdf += math.comb(n, j)  # cdf = P(B <= j) * 2**n
        if cdf / total > tail:
            return j  # P(B <= j-1) <= tail < P(B <= j)
        j += 1


def median_ci_rel(ordered: Sequence[float]) -> tuple[float, float]:
    """(median, relative half-width of its distribution-free ~95% CI) of sorted samples;
    the half-width is inf while there are too few samples (n < 6) for such an interval."""
    n = len(ordered)
    mid = n // 2
    median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    j = ci_rank(n)
    if j == 0 or median <= 0:
        return median, math.inf
    return median, (ordered[n - j] - ordered[j - 1]) / (2 * median)


def ratio_ci(times_a: Sequence[float], times_b: Sequence[float]) -> tuple[float, float] | None:
    """Distribution-free ~95% CI of the median of the per-round ratios a/b (the rounds are
    paired: both ran in one round, so a load drift hits both); None under 6 rounds."""
    ratios = sorted(a / b for a, b in zip(times_a, times_b, strict=True))
    j = ci_rank(len(ratios))
    if j == 0:
        return None
    return ratios[j - 1], ratios[len(ratios) - j]


# ---- one session -------------------------------------------------------------------------
@torch.inference_mode()
def measure_session(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    *,
    tolerance: float = 0.02,
    time_cap_s: float = 20.0,
    min_rounds: int = 7,
    warmup: int = 3,
    seed: int = 0,
    progress: bool | None = None,
    desc: str = "timing",
) -> Timing:
    """Median forward time (ms) of each model, timed in interleaved rounds.

    Each round times every model once, in an order shuffled by `seed`, so drifts in machine
    load hit all of them alike. After `min_rounds` rounds it stops as soon as the median of
    every model is known within `tolerance` (see `median_ci_rel`), or once `time_cap_s`
    has passed since warm-up began. time_cap_s=0 gives exactly `min_rounds` rounds.
    """
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sides = {k: functools.partial(m, x) for k, m in models.items()}
    # Each model's times kept sorted as they come: the CI is then two lookups per round.
    ordered: dict[str, list[float]] = {k: [] for k in models}
    ci = dict.fromkeys(models, math.inf)
    bar = tqdm(desc=desc, unit="round", file=sys.stderr, disable=not show_progress(progress))
    start = time.perf_counter()

    def until(rounds: list[Round]) -> bool:
        for k, seconds in rounds[-1].items():
            bisect.insort(ordered[k], seconds * 1e3)
        ci.update({k: median_ci_rel(v)[1] for k, v in ordered.items()})
        bar.set_postfix(worst_ci=f"{max(ci.values()):.1%}", refresh=False)
        return len(rounds) >= min_rounds and (
            max(ci.values()) <= tolerance or time.perf_counter() - start >= time_cap_s
        )

    try:
        warm_up(sides, warmup)
        rounds = interleaved_rounds(sides, until, seed=seed, sync=sync, bar=bar)
    finally:
        bar.close()
        for k, m in models.items():
            m.train(modes[k])
    return Timing(
        median_ms={k: median_ci_rel(v)[0] for k, v in ordered.items()},
        ci_rel=ci,
        rounds=len(rounds),
        seconds=time.perf_counter() - start,
        tolerance=tolerance,
        times_ms={k: [r[k] * 1e3 for r in rounds] for k in models},
    )


def measure_models(
    models: Mapping[str, nn.Module],
    input_shape: tuple[int, ...],
    *,
    device: str | torch.device = "cpu",
    latency: bool = True,
    **timing,
) -> tuple[dict[str, Cost], Timing | None]:
    """Parameters, FLOPs and (optionally) `measure_session` latency of several models at
    `input_shape`, all on `device` at once. `timing` goes to `measure_session`."""
    device = torch.device(device)
    x = torch.randn(*input_shape, device=device)
    models = {k: m.to(device) for k, m in models.items()}
    static = {k: (*count_params(m), count_flops(m, x)) for k, m in models.items()}
    t = measure_session(models, x, **timing) if latency else None
    costs = {
        k: Cost(
            params_total=total,
            params_sams=sams,
            params_backbone=total - sams,
            flops=flops,
            input_shape=tuple(input_shape),
            latency_ms=t.median_ms[k] if t else None,
            latency_device=device_name(device) if t else None,
        )
        for k, (total, sams, flops) in static.items()
    }
    return costs, t


# ---- entries and flags -------------------------------------------------------------------
def _inversion_flag(
    arch: Arch, archs: Sequence[Arch], ms: Mapping[str, float], tol: float
) -> str | None:
    """A line when `arch` keeps fewer SAMs than another arch yet measures slower (the worst
    such arch is named); None otherwise."""
    worse = [(ms[arch.key] / ms[o.key], o) for o in archs if o.kept > arch.kept]
    worse = [(r, o) for r, o in worse if r > 1]
    if not worse:
        return None
    r, o = max(worse, key=lambda ro: ro[0])
    where = "beyond" if r - 1 > tol else "within"
    return (
        f"{arch.kept} SAMs but {100 * (r - 1):.1f}% slower than {o.name} ({o.kept} SAMs), "
        f"{where} the {100 * tol:g}% tolerance"
    )


def _entries(
    archs: Sequence[Arch], costs: dict[str, Cost], t: Timing | None, common: dict
) -> dict[str, dict]:
    """The stored entry of every arch (plain JSON)."""
    ms = t.median_ms if t else {}
    out = {}
    for a in archs:
        c = costs[a.key]
        out[a.key] = {
            **common,
            **c.as_dict(),
            "input_shape": list(c.input_shape or ()),
            "name": a.name,
            "kept": a.kept,
            # inf (too few rounds for an interval) is not JSON: stored as null.
            "latency_ci_rel": t.ci_rel[a.key] if t and math.isfinite(t.ci_rel[a.key]) else None,
            "rounds": t.rounds if t else 0,
            "converged": t.converged(a.key) if t else None,
            "latency_ratio": {o.key: ms[a.key] / ms[o.key] for o in archs if o is not a and t},
            # Where the ratio lies, from the paired rounds ([lo, hi]; null under 6 rounds).
            "latency_ratio_ci": {
                o.key: _ci_list(t.times_ms[a.key], t.times_ms[o.key])
                for o in archs
                if o is not a and t
            },
            "latency_flag": _inversion_flag(a, archs, ms, t.tolerance) if t else None,
        }
    return out


def _ci_list(a: Sequence[float], b: Sequence[float]) -> list[float] | None:
    ci = ratio_ci(a, b)
    return None if ci is None else list(ci)


# ---- storage ------------------------------------------------------------------------------
def _match(kind: str, input_shape: Sequence[int], device: str, latency: bool) -> dict:
    """The fields a stored session must share with a request to be reused."""
    return {
        "kind": kind,
        "input_shape": list(input_shape),
        "device": device,
        "threads": torch.get_num_threads(),
        "latency": latency,
    }


def _session_id(match: dict, keys: Sequence[str]) -> str:
    return value_sha256({**match, "keys": sorted(keys)}, 16)


def _find_session(costs_dir: Path, match: dict, keys: Sequence[str]) -> dict | None:
    """The newest stored session with the same `match` fields holding every key."""
    found = []
    for path in costs_dir.glob("*.json"):
        try:
            s = read_json(path)
        except (OSError, ValueError):  # unreadable: measure anew rather than fail
            continue
        if all(s.get(f) == v for f, v in match.items()) and set(keys) <= set(s.get("archs", {})):
            found.append(s)
    return max(found, key=lambda s: s.get("created", "")) if found else None


def session_costs(
    out_root: Path,
    kind: str,
    archs: Sequence[Arch],
    input_shape: tuple[int, ...],
    *,
    device: str = "cpu",
    latency: bool = True,
    tolerance: float = 0.02,
    time_cap_s: float = 20.0,
    min_rounds: int = 7,
    warmup: int = 3,
    progress: bool | None = None,
) -> dict[str, dict]:
    """Cost entry of every arch, by key: read from `out_root/costs/` when one stored session
    (same kind, input shape, device, threads, latency on/off) holds all of them, else
    measured now in ONE session, side by side (`measure_session`), and stored."""
    keys = [a.key for a in archs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate arch keys in {keys}")
    costs_dir = Path(out_root) / COSTS_DIR
    match = _match(kind, input_shape, str(torch.device(device)), latency)
    stored = _find_session(costs_dir, match, keys)
    if stored is None:
        timing = {
            "tolerance": tolerance,
            "time_cap_s": time_cap_s,
            "min_rounds": min_rounds,
            "warmup": warmup,
        }
        stored = _measure_and_store(costs_dir, match, archs, timing, progress)
    return {k: stored["archs"][k] for k in keys}


def _measure_and_store(
    costs_dir: Path, match: dict, archs: Sequence[Arch], timing: dict, progress: bool | None
) -> dict:
    """Build every arch, measure them in one session and write the session file."""
    sid = _session_id(match, [a.key for a in archs])
    models = {a.key: a.build() for a in archs}
    shape, device = tuple(match["input_shape"]), match["device"]
    # The seed comes from the session id: the same session shuffles alike when re-measured.
    extra = {"seed": int(sid[:8], 16), "progress": progress, "desc": f"timing {match['kind']}"}
    latency = match["latency"]
    costs, t = measure_models(models, shape, device=device, latency=latency, **timing, **extra)
    dev = device_name(torch.device(device))
    common = {
        "session": sid,
        "latency_device": dev if t else None,
        "threads": match["threads"],
        "torch": torch.__version__,
    }
    session = {
        **match,
        "session": sid,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "measurement": timing,
        "rounds": t.rounds if t else 0,
        "seconds": t.seconds if t else 0.0,
        "converged": t.all_converged if t else None,
        "machine": {
            "device": dev,
            "host": platform.node(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "archs": _entries(archs, costs, t, common),
    }
    atomic_write_json(costs_dir / f"{sid}.json", session)
    return session


def measure_latencies(
    models: dict[str, nn.Module], x: torch.Tensor, *, warmup: int = 5, repeats: int = 20
) -> dict[str, float]:
    """Median forward time (ms) of each model over exactly `repeats` interleaved rounds,
    after warm-up: `measure_session` with no early stop."""
    t = measure_session(models, x, warmup=warmup, min_rounds=repeats, time_cap_s=0, progress=False)
    return t.median_ms


def measure_costs(
    models: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    *,
    device: str | torch.device = "cpu",
    latency: bool = True,
    warmup: int = 5,
    repeats: int = 20,
) -> dict[str, Cost]:
    """Parameters, FLOPs at `input_shape` (N, C, H, W) and, optionally, latency, for
    several models measured side by side (`repeats` interleaved rounds, no early stop)."""
    timing = {"warmup": warmup, "min_rounds": repeats, "time_cap_s": 0, "progress": False}
    return measure_models(models, input_shape, device=device, latency=latency, **timing)[0]


def measure_cost(model: nn.Module, input_shape: tuple[int, ...], **kwargs) -> Cost:
    """`measure_costs` for one model."""
    return measure_costs({"model": model}, input_shape, **kwargs)["model"]
