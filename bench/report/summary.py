"""Seed summaries per benchmark cell x ticket, each compared with its full and none controls.

A benchmark *cell* is (task, dataset, eval split, head, protocol): only records of one cell
are compared. A ticket's controls are the rows of its cell whose identity.baseline is
"full" / "none" with the ticket's backbone, SAM and sharing; exactly one of each must match.

Per row: mean, std (sample, ddof=1), min, max and n over the finished seeds; the paired
difference to each control (bench.report.paired: vs_<c>_diff in the metric's units,
vs_<c>_rel in % of the control, each with its 95% t-interval _lo/_hi, n and seeds; the
transfer score is vs_full_rel); the share of the full-SAM gain (bench.report.score); cost
saved vs full (1 - ticket / full for parameters and GFLOPs; for latency 1 - the ratio to
full measured in one side-by-side session, never a ratio of timings taken apart); and the
verdicts vs full on the paper's three claims. A control's own row has no comparison with
itself (empty, not missing): "none vs full" is the SAM's own effect, worth reading.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.report.collect import CELL_KEYS, IDENTITY_COLUMNS, TICKET_KEYS, is_number
from bench.report.paired import (
    Paired,
    accuracy_verdict,
    cheaper_verdict,
    latency_verdict,
    paired_difference,
)
from bench.report.rank import rank_cells
from bench.report.score import GainShare, gain_share
from bench.util.errors import BenchError

__all__ = ["CONTROLS", "SUMMARY_COLUMNS", "TOLERANCE_PCT", "summarize", "versus_columns"]

NAN = float("nan")
CONTROLS = ("full", "none")
TOLERANCE_PCT = 1.0  # accuracy "keeps" down to -1% relative to full


def versus_columns(which: str) -> tuple[str, ...]:
    """The CSV columns of the paired difference to one control."""
    names = "n seeds diff std lo hi rel rel_lo rel_hi reason".split()
    return tuple(f"vs_{which}_{name}" for name in names)


SUMMARY_COLUMNS = (
    *CELL_KEYS,
    "protocol",
    *IDENTITY_COLUMNS,
    *"metric higher_is_better n n_failed seeds mean std min max rank".split(),
    *versus_columns("full"),
    *versus_columns("none"),
    *"gain_share gain_share_n gain_share_seeds gain_share_reason".split(),
    *"tolerance_pct verdict_accuracy verdict_params verdict_flops verdict_latency".split(),
    *"params_total params_sams gflops latency_ms latency_device".split(),
    *"params_saved gflops_saved latency_saved latency_ratio_lo latency_ratio_hi".split(),
    "latency_flag",
    # extra_<name> columns (means over the finished seeds) go last
)


def _mean(values: Iterable[Any]) -> float | int | None:
    """Mean of the numbers; a value every run shares is kept as is (parameter counts stay ints)."""
    vals = [v for v in values if is_number(v)]
    if not vals:
        return None
    return vals[0] if all(v == vals[0] for v in vals) else statistics.fmean(vals)


def _saved(ticket: float | None, full: float | None) -> float | None:
    if ticket is None or full is None or full == 0:
        return None
    return 1.0 - ticket / full


def _ratio_interval(done: Sequence[Mapping[str, Any]]) -> tuple[float | None, float | None]:
    """The ticket/full latency ratio's interval; the hull when seeds reused different
    sessions; None when a run has none."""
    los = [r["latency_ratio_full_lo"] for r in done]
    his = [r["latency_ratio_full_hi"] for r in done]
    if not done or None in los or None in his:
        return None, None
    return min(los), max(his)


def _check_cell_metric(runs: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[tuple, Mapping[str, Any]] = {}
    for r in runs:
        cell = tuple(r[k] for k in CELL_KEYS)
        first = seen.setdefault(cell, r)
        if (r["metric"], r["higher_is_better"]) != (first["metric"], first["higher_is_better"]):
            raise BenchError(
                f"{r['record']}: field 'result.metric': {r['metric']!r} "
                f"(higher_is_better={r['higher_is_better']}) disagrees with {first['record']} "
                f"({first['metric']!r}, higher_is_better={first['higher_is_better']}) in the "
                "same task, dataset, split, head and protocol"
            )


def _seed_values(members: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    by_seed: dict[int, Mapping[str, Any]] = {}
    for r in members:
        if r["status"] != "finished":
            continue
        if r["seed"] in by_seed:
            raise BenchError(
                f"{r['record']}: field 'provenance.seed': seed {r['seed']} is also in "
                f"{by_seed[r['seed']]['record']} (same ticket, task, dataset, head, protocol)"
            )
        by_seed[r["seed"]] = r
    return by_seed


def _summary_row(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    first = members[0]
    by_seed = _seed_values(members)
    done = list(by_seed.values())
    values = [r["value"] for r in done]
    devices = {r["latency_device"] for r in done if r["latency_ms"] is not None}
    ratio_lo, ratio_hi = _ratio_interval(done)
    row: dict[str, Any] = {
        **{k: first[k] for k in (*CELL_KEYS, "protocol", *IDENTITY_COLUMNS)},
        "metric": first["metric"],
        "higher_is_better": first["higher_is_better"],
        "n": len(done),
        "n_failed": len(members) - len(done),
        "seeds": " ".join(str(s) for s in sorted(by_seed)),
        "mean": statistics.fmean(values) if values else NAN,
        "std": statistics.stdev(values) if len(values) > 1 else NAN,
        "min": min(values) if values else NAN,
        "max": max(values) if values else NAN,
        "rank": None,
        "params_total": _mean(r["params_total"] for r in done),
        "params_sams": _mean(r["params_sams"] for r in done),
        "gflops": _mean(r["gflops"] for r in done),
        # Latencies from different machines do not average into anything meaningful.
        "latency_ms": _mean(r["latency_ms"] for r in done) if len(devices) == 1 else None,
        "latency_device": devices.pop() if len(devices) == 1 else None,
        "latency_ratio_lo": ratio_lo,
        "latency_ratio_hi": ratio_hi,
        "_latency_ratio": _mean(r["latency_ratio_full"] for r in done),
        "latency_flag": next((r["latency_flag"] for r in done if r["latency_flag"]), None),
        "_values": {s: r["value"] for s, r in by_seed.items()},
    }
    for key in sorted({k for r in done for k in r if k.startswith("extra_")}):
        row[key] = _mean(r.get(key) for r in done)
    return row


def _control(
    rows: Sequence[dict[str, Any]], row: Mapping[str, Any], which: str
) -> tuple[dict[str, Any] | None, str | None]:
    """The row's `which` control, or None and why."""
    found = [
        c
        for c in rows
        if c["baseline"] == which
        and all(c[k] == row[k] for k in (*CELL_KEYS, "backbone", "sam", "sharing"))
    ]
    if len(found) > 1:
        names = ", ".join(sorted(c["ticket"] for c in found))
        return None, f"{len(found)} {which} controls match ({names})"
    if not found:
        return None, (
            f"no {which} control ({row['backbone']}-{row['sam']}, sharing {row['sharing']}) "
            "with the same task, dataset, split, head and protocol"
        )
    return found[0], None


def _versus(row: Mapping[str, Any], control: Mapping[str, Any], which: str) -> Paired:
    """The paired difference to a control; its reason names the ticket's unpaired seeds."""
    p = paired_difference(row["_values"], control["_values"], row["higher_is_better"])
    lacking = sorted(set(row["_values"]) - set(control["_values"]))
    notes = [p.reason] if p.reason else []
    if not p.seeds:
        notes = [f"no seed shared with the {which} control"]
    elif lacking:
        seeds = " ".join(str(s) for s in lacking)
        notes.insert(0, f"seed {seeds}: no finished {which} control run")
    return Paired(**{**vars(p), "reason": "; ".join(notes) or None})


def _put_versus(row: dict[str, Any], which: str, p: Paired | None, reason: str | None) -> None:
    cols = versus_columns(which)
    if p is None:
        row.update(dict.fromkeys(cols))
        row[cols[-1]] = reason
        return
    values = (p.n, " ".join(map(str, p.seeds)), p.diff, p.std, p.lo, p.hi, p.rel)
    row.update(zip(cols, (*values, p.rel_lo, p.rel_hi, p.reason)))


Found = dict[str, tuple[dict[str, Any] | None, str | None]]


def _share(row: Mapping[str, Any], found: Found) -> GainShare:
    """The share of the full-SAM gain, or NaN and why (a control missing, a failed run)."""
    missing = next((m for _, m in found.values() if m), None)
    if missing is None and row["n"] == 0:
        missing = "no finished run"
    full, none = (found[w][0] for w in CONTROLS)
    if missing or full is None or none is None:
        return GainShare(NAN, (), missing)
    return gain_share(row["_values"], full["_values"], none["_values"], row["higher_is_better"])


def _compare(rows: Sequence[dict[str, Any]], row: dict[str, Any], tolerance_pct: float) -> None:
    """Fill the row's paired differences, share of gain, savings and verdicts."""
    found: Found = {which: _control(rows, row, which) for which in CONTROLS}
    paired: dict[str, Paired | None] = {}
    for which, (control, missing) in found.items():
        p = None
        if control is row:  # a control is not compared with itself
            missing = None
        elif control is not None and row["n"] == 0:
            missing = "no finished run"
        elif control is not None:
            p = _versus(row, control, which)
        paired[which] = p
        _put_versus(row, which, p, missing)
    share = _share(row, found)
    row["gain_share"], row["gain_share_n"] = share.value, len(share.seeds)
    row["gain_share_seeds"] = " ".join(str(s) for s in share.seeds)
    row["gain_share_reason"] = share.reason
    ref = found["full"][0]
    for key in ("params_total", "gflops"):
        row[key.split("_")[0] + "_saved"] = _saved(row[key], ref and ref[key])
    # Only a ratio timed side by side with the full network (one session) says anything.
    ratio = row["_latency_ratio"]
    row["latency_saved"] = None if ratio is None else 1.0 - ratio
    _verdicts(row, paired["full"], ref, tolerance_pct)


def _verdicts(
    row: dict[str, Any], vs_full: Paired | None, full: Mapping[str, Any] | None, tol: float
) -> None:
    """Accuracy from the relative interval, parameters and FLOPs from exact counts, latency
    from the session's ratio interval; empty where there is no comparison with full."""
    row["tolerance_pct"] = tol
    keys = ("verdict_accuracy", "verdict_params", "verdict_flops", "verdict_latency")
    row.update(dict.fromkeys(keys))
    if vs_full is None or full is None:
        return
    row["verdict_accuracy"] = accuracy_verdict(vs_full, tol)
    row["verdict_params"] = cheaper_verdict(row["params_total"], full["params_total"])
    row["verdict_flops"] = cheaper_verdict(row["gflops"], full["gflops"])
    row["verdict_latency"] = latency_verdict(row["latency_ratio_lo"], row["latency_ratio_hi"])


_CONTROL_ORDER = {"none": 0, "full": 1}


def summarize(
    runs: Sequence[Mapping[str, Any]], *, tolerance_pct: float = TOLERANCE_PCT
) -> list[dict[str, Any]]:
    """One row per benchmark cell x ticket: seed statistics, rank, paired differences to the
    controls, share of gain, savings and verdicts (accuracy judged at `tolerance_pct`)."""
    _check_cell_metric(runs)
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(*(r[k] for k in CELL_KEYS), *(r[k] for k in TICKET_KEYS))].append(r)
    rows = [_summary_row(members) for members in groups.values()]
    for row in rows:
        _compare(rows, row, tolerance_pct)
    rank_cells(rows)
    rows.sort(
        key=lambda r: (
            *(str(r[k]) for k in CELL_KEYS),
            _CONTROL_ORDER.get(r["baseline"], 2),
            r["ticket"],
            r["ticket_checksum"],
        )
    )
    for r in rows:
        del r["_values"], r["_latency_ratio"]
    return rows
