"""The benchmark harness: sides timed interleaved in one process, figures taken per round.

A comparison times every side once per round, in an order shuffled by a fixed seed, after
warm-up rounds (bench.cost.rounds, the one interleaved timer, shared with the cost table);
a figure (e.g. "ticket is x times as fast as full") is computed from the times of one
round, so drifts in machine load hit both sides of a ratio alike. Within a round a side is
called back to back often enough to run at least `min_time` (a count calibrated once after
warm-up, the same for every side of a comparison where their speeds allow: repeat_counts),
and its figure is the time per call. Reported: the median of the per-round figures, their
spread (least to greatest per-round value: where single rounds fall) and the
distribution-free ~95% confidence interval of that median (bench.cost.table's
order-statistic rule; with 7 or 8 rounds, min to max; from 9 rounds the extremes fall
outside): the narrower claim of where the median of runs like this one lies.
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench.cost.rounds import interleaved_rounds, timed, warm_up

__all__ = [
    "Comparison",
    "Metric",
    "Session",
    "Stat",
    "Table",
    "Target",
    "calibrate",
    "default_min_time",
    "ratio",
    "repeat_counts",
    "speed",
    "summarize",
    "time_rounds",
    "within",
]

Times = Mapping[str, float]


@dataclass(frozen=True)
class Target:
    """Bounds a figure's median must lie within (None: unbounded)."""

    lo: float | None = None
    hi: float | None = None

    def met(self, value: float) -> bool:
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def overlaps(self, lo: float, hi: float) -> bool:
        """Whether some value in [lo, hi] meets the target."""
        return (self.lo is None or hi >= self.lo) and (self.hi is None or lo <= self.hi)

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"{self.lo:.3g} to {self.hi:.3g}"
        return f">= {self.lo:.3g}" if self.lo is not None else f"<= {self.hi:.3g}"


def within(tolerance: float) -> Target:
    """A ratio within `tolerance` of 1 (e.g. 0.02: 0.98 to 1.02)."""
    return Target(1 - tolerance, 1 + tolerance)


@dataclass(frozen=True)
class Metric:
    """A figure computed from one round's side times (seconds)."""

    name: str
    fn: Callable[[Times], float]
    target: Target | None = None


def speed(a: str, b: str) -> Callable[[Times], float]:
    """How many times as fast side `a` runs as side `b` (b's time / a's time)."""
    return lambda t: t[b] / t[a]


def ratio(name: str, a: str, b: str, target: Target | None = None) -> Metric:
    """The Metric "a / b" in throughput (a's speed over b's)."""
    return Metric(name, speed(a, b), target)


@dataclass(frozen=True)
class Stat:
    """Median of per-round values, its ~95% confidence interval [lo, hi] (None with fewer
    than 6 rounds: too few for such an interval) and the rounds' spread [least, most]."""

    median: float
    lo: float | None
    hi: float | None
    n: int
    least: float | None = None  # None: read from a report that did not keep it
    most: float | None = None

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        from bench.cost.table import ci_rank  # torch: not for `compare` or --help

        v = sorted(values)
        n = len(v)
        median = statistics.median(v)
        j = ci_rank(n)
        lo, hi = (v[j - 1], v[n - j]) if j else (None, None)
        return cls(median, lo, hi, n, v[0], v[-1])

    @property
    def spread(self) -> float:
        """Half-width of the confidence interval (inf with too few rounds)."""
        return math.inf if self.lo is None or self.hi is None else (self.hi - self.lo) / 2

    @property
    def interval(self) -> str:
        if self.lo is None or self.hi is None:
            return f"n/a ({self.n} rounds)"
        return f"{self.lo:.3f} to {self.hi:.3f}"

    @property
    def rounds_range(self) -> str:
        """The spread of the rounds, least to greatest."""
        if self.least is None or self.most is None:
            return "n/a"
        return f"{self.least:.3f} to {self.most:.3f}"

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.interval}]"


@dataclass
class Comparison:
    """One measured case: each side's time and each figure, with their spreads."""

    case: str
    sides: dict[str, Stat]  # seconds per call
    figures: dict[str, Stat]
    targets: dict[str, Target | None]
    rounds: int
    warmup: int
    info: dict[str, Any] = field(default_factory=dict)
    repeats: dict[str, int] = field(default_factory=dict)  # calls per side per round
    min_time: float = 0.0  # seconds each side ran at least per round
    values: dict[str, list[float]] = field(default_factory=dict)  # per round, each figure
    side_values: dict[str, list[float]] = field(default_factory=dict)  # per round, each side

    @property
    def calls(self) -> str:
        """The calls per round: one count when every side has the same."""
        counts = set(self.repeats.values())
        if len(counts) == 1:
            return str(counts.pop())
        return ", ".join(f"{k} {n}" for k, n in self.repeats.items())

    def met(self, figure: str) -> bool | None:
        target = self.targets[figure]
        return None if target is None else target.met(self.figures[figure].median)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "rounds": self.rounds,
            "warmup": self.warmup,
            "min_time_s": self.min_time,
            "repeats": self.repeats,
            "info": self.info,
            "sides_s": {
                k: {**asdict(s), "values": self.side_values.get(k, [])}
                for k, s in self.sides.items()
            },
            "figures": {
                k: {
                    **asdict(s),
                    "target": _text(self.targets[k]),
                    "bounds": None if self.targets[k] is None else asdict(self.targets[k]),
                    "met": self.met(k),
                    "values": self.values.get(k, []),
                }
                for k, s in self.figures.items()
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        """A comparison read back from `to_dict` (its per-round values included)."""
        figs, sides = d["figures"], d["sides_s"]
        return cls(
            case=d["case"],
            sides={k: _stat(v) for k, v in sides.items()},
            figures={k: _stat(v) for k, v in figs.items()},
            targets={
                k: None if v["bounds"] is None else Target(**v["bounds"]) for k, v in figs.items()
            },  # fmt: skip
            rounds=d["rounds"],
            warmup=d["warmup"],
            info=dict(d["info"]),
            repeats=dict(d["repeats"]),
            min_time=d["min_time_s"],
            values={k: list(v["values"]) for k, v in figs.items()},
            side_values={k: list(v["values"]) for k, v in sides.items()},
        )

    @classmethod
    def pooled(cls, parts: Sequence[Comparison]) -> Comparison:
        """One comparison from the same case measured in several processes: every part's
        per-round values pooled, so the spread holds the differences between processes."""
        first = parts[0]
        side_values = {k: [v for p in parts for v in p.side_values[k]] for k in first.sides}
        values = {k: [v for p in parts for v in p.values[k]] for k in first.figures}
        info = {**first.info, "timing_s": round(sum(p.info.get("timing_s", 0) for p in parts), 2)}
        if any(p.repeats != first.repeats for p in parts):
            info["repeats_per_process"] = [p.repeats for p in parts]
        return replace(
            first,
            sides={k: Stat.of(v) for k, v in side_values.items()},
            figures={k: Stat.of(v) for k, v in values.items()},
            rounds=sum(p.rounds for p in parts),
            info=info,
            values=values,
            side_values=side_values,
        )


def _stat(d: Mapping[str, Any]) -> Stat:
    values = d.get("values") or []
    least, most = d.get("least"), d.get("most")
    if least is None and values:  # a report written before the spread was kept
        least, most = min(values), max(values)
    return Stat(d["median"], d["lo"], d["hi"], d["n"], least, most)


@dataclass
class Table:
    """A table that is not a ratio (growth, evaluations to a target)."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""


def _text(target: Target | None) -> str | None:
    return None if target is None else str(target)


def _sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def calibrate(fn: Callable[[], Any], min_time: float) -> float:
    """Seconds per call of `fn`, from back-to-back calls (1, 2, 4, ...) until they have
    lasted `min_time` / 2 (one call when it alone lasts that long)."""
    number, total, calls = 1, 0.0, 0
    while True:
        total += timed(fn, number, sync=_sync) * number
        calls += number
        if total >= min_time / 2:
            return total / calls
        number *= 2


def repeat_counts(per_call: Times, min_time: float) -> dict[str, int]:
    """Calls per round of each side so that each runs at least `min_time`: the same count
    for every side (the fastest side's), so cold-start costs weigh alike on both sides of a
    ratio, unless that makes some side's round last over PAIR_LIMIT x min_time and over
    one of its calls (sides far apart in speed); then each side its own count."""
    own = {k: max(1, math.ceil(min_time / max(t, 1e-9))) for k, t in per_call.items()}
    common = max(own.values())
    if all(common * t <= max(PAIR_LIMIT * min_time, t) for t in per_call.values()):
        return dict.fromkeys(per_call, common)
    return own


PAIR_LIMIT = 4.0  # see repeat_counts


def time_rounds(
    sides: Mapping[str, Callable[[], Any]],
    rounds: int,
    warmup: int,
    *,
    min_time: float = 0.1,
    seed: int = 0,
    desc: str = "",
) -> tuple[list[dict[str, float]], dict[str, int]]:
    """Per-round seconds per call of each side, and the calls per round (repeat_counts):
    `warmup` untimed rounds, a calibration of each side (calibrate; a warm-up call may
    still pay one-off costs), then `rounds` timed ones, every side in a shuffled order."""
    warm_up(sides, warmup)
    number = repeat_counts({k: calibrate(fn, min_time) for k, fn in sides.items()}, min_time)
    bar = tqdm(total=rounds, desc=desc, unit="round", file=sys.stderr, leave=False,
               disable=not sys.stderr.isatty())  # fmt: skip
    with bar:
        out = interleaved_rounds(
            sides, lambda done: len(done) >= rounds, repeats=number, seed=seed,
            before_round=gc.collect, sync=_sync, bar=bar,
        )  # fmt: skip
    return out, number


def summarize(case: str, per_round: Sequence[Times], metrics: Sequence[Metric], *,
              warmup: int = 0, repeats: Mapping[str, int] | None = None,
              min_time: float = 0.0) -> Comparison:  # fmt: skip
    """Each side's and each metric's median and CI over rounds; a metric is computed
    within each round (paired), never from the sides' medians."""
    side_values = {k: [r[k] for r in per_round] for k in per_round[0]}
    values = {m.name: [m.fn(r) for r in per_round] for m in metrics}
    return Comparison(
        case=case,
        sides={k: Stat.of(v) for k, v in side_values.items()},
        figures={k: Stat.of(v) for k, v in values.items()},
        targets={m.name: m.target for m in metrics},
        rounds=len(per_round),
        warmup=warmup,
        repeats=dict(repeats or {}),
        min_time=min_time,
        values=values,
        side_values=side_values,
    )


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return "-" if v is None else str(v)


def default_min_time(mode: str) -> float:
    """Each side's least time per round (seconds): 100 ms, 20 ms for a quick run."""
    return 0.02 if mode == "quick" else 0.1


class Session:
    """What one benchmark module sees: its settings, and where its results go."""

    def __init__(
        self,
        name: str,
        *,
        mode: str = "default",
        rounds: int,
        warmup: int,
        out: Path,
        data_root: Path | None = None,
        cache: Path | None = None,
        echo: Callable[[str], None] = print,
        min_time: float | None = None,
    ) -> None:
        self.name, self.mode, self.rounds, self.warmup = name, mode, rounds, warmup
        self.out, self.data_root, self.echo = out, data_root, echo
        # What benchmarks may reuse across runs (a trained supernet): beside the reports.
        self.cache = out.parent if cache is None else cache
        # Each side's least time per round (time_rounds); None: the mode's default.
        self.min_time = default_min_time(mode) if min_time is None else min_time
        self.comparisons: list[Comparison] = []
        self.tables: list[Table] = []
        self.notes: list[str] = []
        self.files: list[str] = []

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    def pick(self, sizes: Mapping[str, Any]) -> Any:
        """The entry of `sizes` for this run's mode (quick, default, full; full falls
        back to default)."""
        return sizes.get(self.mode, sizes["default"])

    def compare(
        self,
        case: str,
        sides: Mapping[str, Callable[[], Any]],
        metrics: Sequence[Metric],
        *,
        info: Mapping[str, Any] | None = None,
        rounds: int | None = None,
        min_time: float | None = None,
    ) -> Comparison:
        """Time `sides` interleaved and record each metric's median and spread (`min_time`:
        each side's least time per round where the session's is too short for a case)."""
        n, t0 = rounds or self.rounds, time.perf_counter()
        least = max(self.min_time, min_time or 0.0)
        per_round, repeats = time_rounds(
            sides, n, self.warmup, min_time=least, desc=f"{self.name}: {case}"
        )
        comp = summarize(case, per_round, metrics, warmup=self.warmup, repeats=repeats,
                         min_time=least)  # fmt: skip
        comp.info = {**(info or {}), "timing_s": round(time.perf_counter() - t0, 2)}
        self.comparisons.append(comp)
        for name, stat in comp.figures.items():
            met = comp.met(name)
            flag = "" if met is None else ("  ok" if met else "  MISSED")
            target = _text(comp.targets[name])
            line = f"  {case}: {name} {stat} spread {stat.rounds_range}"
            line += f" (target {target}){flag}" if target else ""
            self.echo(f"{line}  [{comp.calls} calls/round]")
        return comp

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              note: str = "") -> Table:  # fmt: skip
        t = Table(title, list(columns), [list(r) for r in rows], note)
        self.tables.append(t)
        self.echo("\n".join(["", f"  {title}", *_markdown_table(t.columns, t.rows, "  ")]))
        return t

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.echo(f"  note: {text}")

    def load(self, d: Mapping[str, Any]) -> None:
        """Take the results `to_dict` wrote (this benchmark run in another process)."""
        self.comparisons = [Comparison.from_dict(c) for c in d["comparisons"]]
        self.tables = [Table(**t) for t in d["tables"]]
        self.notes, self.files = list(d["notes"]), list(d["files"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "comparisons": [c.to_dict() for c in self.comparisons],
            "tables": [asdict(t) for t in self.tables],
            "notes": self.notes,
            "files": self.files,
        }


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]],
                    indent: str = "") -> list[str]:  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt_value(v) for v in r) + " |" for r in rows]
    return [indent + line for line in lines]


def figure_rows(comparisons: Sequence[Comparison]) -> list[list[Any]]:
    """One row per figure (FIGURE_COLUMNS)."""
    rows = []
    for c in comparisons:
        for name, s in c.figures.items():
            rows.append([
                c.case, name, f"{s.median:.3f}", s.rounds_range, s.interval, s.n, c.calls,
                _text(c.targets[name]) or "", verdict(c.targets[name], s),
            ])  # fmt: skip
    return rows


FIGURE_COLUMNS = ["case", "figure", "median", "spread (rounds)", "95% CI of median", "rounds",
                  "calls/round", "target", "met"]  # fmt: skip


def verdict(target: Target | None, s: Stat) -> str:
    """Whether the median meets the target; a miss says whether the median's CI reaches
    the target (a miss within the noise) or lies wholly outside it."""
    if target is None:
        return ""
    if target.met(s.median):
        return "yes"
    if s.lo is not None and s.hi is not None and target.overlaps(s.lo, s.hi):
        return "**no** (CI reaches it)"
    return "**no**"


def session_markdown(name: str, doc: str, result: Mapping[str, Any], s: Session | None) -> str:
    """One benchmark's section of the Markdown report."""
    head = f"## {name} ({_duration(result['wall_s'])})\n\n{doc}\n"
    if result.get("error"):
        return head + f"\n**{result['status']}**: {result['error']}\n"
    assert s is not None
    parts = [head]
    if s.comparisons:
        parts.append("\n".join(_markdown_table(FIGURE_COLUMNS, figure_rows(s.comparisons))))
    for t in s.tables:
        body = "\n".join(_markdown_table(t.columns, t.rows))
        parts.append(f"**{t.title}**\n\n{body}" + (f"\n\n{t.note}" if t.note else ""))
    parts += [f"Note: {n}" for n in s.notes]
    parts += [f"![{Path(f).stem}]({Path(f).name})" for f in s.files if f.endswith(".png")]
    return "\n\n".join(parts) + "\n"


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"
