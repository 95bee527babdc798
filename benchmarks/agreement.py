"""python -m benchmarks compare A.json B.json: do two runs' figures agree?

For every figure (benchmark, case, figure) in both reports: the two medians with their
spreads (the rounds' least to greatest value) and 95% CIs, and two tests, bounds included:
- within spread: each run's median lies in the other run's spread, the test the report's
  "spread" column stands for;
- within CI, the stricter one: each median lies inside the other run's CI of the median
  ("one way only": just one does); a figure without a CI (under 6 rounds) cannot pass it.
"CIs overlap", looser than the second, is said beside them.
Exit 0 whatever the verdict; 2 for a bad report.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.util.errors import BenchError
from benchmarks.harness import Stat, _markdown_table, _stat

Key = tuple[str, str, str]  # benchmark, case, figure
COLUMNS = ["benchmark", "case", "figure", "A median [95% CI] (spread)",
           "B median [95% CI] (spread)", "within spread", "A in B's CI", "B in A's CI",
           "within CI", "CIs overlap"]  # fmt: skip


def load_report(path: Path) -> dict[str, Any]:
    """A report.json that python -m benchmarks wrote."""
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise BenchError(f"{path}: cannot read it ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{path}: expected a benchmark report.json, not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), dict):
        raise BenchError(f"{path}: expected a benchmark report.json (a 'benchmarks' object)")
    return data


def figures(path: Path, report: Mapping[str, Any]) -> dict[Key, Stat]:
    """Every figure of the report, keyed by (benchmark, case, figure)."""
    out: dict[Key, Stat] = {}
    for name, res in report["benchmarks"].items():
        for i, comp in enumerate(res.get("comparisons") or []):
            try:
                for fig, v in comp["figures"].items():
                    out[name, comp["case"], fig] = _checked(_stat(v))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise BenchError(
                    f"{path}: benchmarks.{name}.comparisons[{i}]: expected a case and figures "
                    f"with median, lo, hi, n ({type(e).__name__}: {e})"
                ) from None
    return out


def _checked(s: Stat) -> Stat:
    """`s` with numbers where numbers belong (ValueError, TypeError otherwise)."""
    opt = [None if v is None else float(v) for v in (s.lo, s.hi, s.least, s.most)]
    return Stat(float(s.median), opt[0], opt[1], int(s.n), opt[2], opt[3])


def in_spread(value: float, s: Stat) -> bool | None:
    """Whether `value` lies in the rounds' spread of `s` (None: `s` has none)."""
    return None if s.least is None or s.most is None else s.least <= value <= s.most


def inside(value: float, s: Stat) -> bool | None:
    """Whether `value` lies in the CI of `s` (None: `s` has no CI)."""
    return None if s.lo is None or s.hi is None else s.lo <= value <= s.hi


def agreement(a: Mapping[Key, Stat], b: Mapping[Key, Stat]) -> list[list[Any]]:
    """One row per figure in both (COLUMNS), in A's order."""
    rows = []
    for key in (k for k in a if k in b):
        sa, sb = a[key], b[key]
        spread = in_spread(sa.median, sb) and in_spread(sb.median, sa)
        a_in_b, b_in_a = inside(sa.median, sb), inside(sb.median, sa)
        rows.append([*key, _show(sa), _show(sb), "yes" if spread else "**no**",
                     _yes(a_in_b), _yes(b_in_a), "yes" if a_in_b and b_in_a else "**no**",
                     _yes(overlap(sa, sb))])  # fmt: skip
    return rows


def _show(s: Stat) -> str:
    return f"{s} ({s.rounds_range})"


def overlap(a: Stat, b: Stat) -> bool | None:
    """Whether the two CIs share a value (None: one has no CI): the looser test, which a
    difference between runs fails only when it exceeds both spreads together."""
    if None in (a.lo, a.hi, b.lo, b.hi):
        return None
    return a.lo <= b.hi and b.lo <= a.hi  # type: ignore[operator]


def _yes(v: bool | None) -> str:
    return "n/a" if v is None else ("yes" if v else "no")


def _run_line(label: str, path: Path, r: Mapping[str, Any]) -> str:
    load = (r.get("machine") or {}).get("load_average_start") or ["?"]
    return (f"{label}: {path} (started {r.get('started', '?')}, {r.get('mode', '?')} sizes, "
            f"{r.get('rounds', '?')} rounds, load {load[0]} at start)")  # fmt: skip


def compare_reports(path_a: Path, path_b: Path) -> str:
    """The comparison's text: both runs, one row per shared figure, and the tally."""
    ra, rb = load_report(path_a), load_report(path_b)
    a, b = figures(path_a, ra), figures(path_b, rb)
    rows = agreement(a, b)
    spread = sum(r[5] == "yes" for r in rows)
    agree = sum(r[8] == "yes" for r in rows)
    overlaps = sum(r[9] == "yes" for r in rows)
    one_way = sum(r[6:8].count("yes") == 1 for r in rows)
    no_ci = sum("n/a" in r[6:8] for r in rows)
    only = f"only in A: {sum(k not in b for k in a)}, only in B: {sum(k not in a for k in b)}"
    tally = f"within spread: {spread} of {len(rows)}; within CI: {agree}"
    tally += f" ({no_ci} without a CI)" if no_ci else ""
    tally += f"; one way only: {one_way}; CIs overlap: {overlaps}"
    return "\n".join([_run_line("A", path_a, ra), _run_line("B", path_b, rb), "",
                      *_markdown_table(COLUMNS, rows), "", f"{tally}; {only}"])  # fmt: skip


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks compare",
                                 description=__doc__.split("\n")[0])  # fmt: skip
    ap.add_argument("a", type=Path, metavar="REPORT_A.json")
    ap.add_argument("b", type=Path, metavar="REPORT_B.json")
    args = ap.parse_args(argv)
    try:
        text = compare_reports(args.a, args.b)
    except BenchError as e:
        print(f"benchmarks compare: error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0
