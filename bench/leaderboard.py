"""Leaderboards: result records become per-run tables, seed summaries, transfer scores and
average ranks, exported as CSV, Markdown or LaTeX.

Files under <out>/leaderboards/ (always built from every record; filters never touch them):
  <task>.csv     one row per run, finished and failed, with the record it came from
  summary.csv    mean, std (sample, ddof=1) and n over seeds per benchmark cell x ticket
  ranks.csv      average rank across tasks per ticket

A benchmark *cell* is (task, dataset, eval split, head, protocol): only records of one cell
are compared. The protocol is the record's protocol dict, matched by its canonical JSON
(`protocol_id` is the first 8 hex digits of its sha256).

Transfer score of a ticket in a cell: the share of the full-SAM gain it keeps,
    score = g(v_ticket) / g(v_full),  g(v) = s * (v - v_none),  s = +1 (higher is better) or -1,
which is (v - v_none) / (v_full - v_none) with the gain measured in the metric's direction.
- Controls: the summary rows of the same cell whose identity.baseline is "full" / "none",
  with the ticket's backbone, SAM and sharing. Exactly one of each must match.
- Seeds: the means are taken over the seeds the ticket and both controls all finished
  (their intersection, listed in `score_seeds`), so every mean comes from the same seeds.
- Seed noise: seed s of every arm starts from pretraining seed s and trains on the same
  seeded stream, so the arms are compared pairwise by seed: the full-vs-none gap is within
  seed noise when |mean_s(full_s - none_s)| <= std_s(full_s - none_s) over those seeds
  (the paired form of "the gap is no larger than one seed's spread"; noise that moves all
  arms of a seed alike, e.g. a lucky pretraining seed, cancels in the pairs). With fewer than 2
  shared seeds the noise cannot be judged, so the score is NaN too (a single seed cannot tell
  a gain from noise). When full is worse than none beyond noise there is no gain to share,
  and the score is NaN. Every NaN score carries its reason in `score_reason`.
Cost saved vs full: 1 - cost_ticket / cost_full for parameters and GFLOPs; for latency
1 - the latency ratio to the full network measured in one side-by-side session
(bench.cost.table), never a ratio of timings taken apart. A network with fewer active SAMs
that measured slower than one with more carries the session's flag (`latency_flag`),
shown as a footnote.

Rank: within a cell, tickets are ranked by mean metric in its direction (1 = best, ties share
the average rank). A ticket's rank on a task is the mean of its cell ranks in that task;
its average rank is the mean over the tasks it was run on (`n_tasks` says how many: average
ranks over different sets of tasks are not comparable, so ranks.csv sorts by n_tasks first).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy.stats import rankdata

from bench.cli.catalog import FORMATS
from bench.runs.records import RECORDS_DIR, iter_records
from bench.util.errors import BenchError
from bench.util.fingerprint import canonical_json, value_sha256
from bench.util.io import atomic_write_text

__all__ = [
    "FORMATS",
    "LEADERBOARD_DIR",
    "Leaderboard",
    "Score",
    "average_ranks",
    "build",
    "collect",
    "latex_escape",
    "leaderboard",
    "protocol_id",
    "summarize",
    "to_csv",
    "to_latex",
    "to_markdown",
    "transfer_score",
    "write_tables",
]

LEADERBOARD_DIR = "leaderboards"
NAN = float("nan")

CELL_KEYS = ("task", "dataset", "eval_split", "head", "protocol_id")
TICKET_KEYS = ("ticket", "ticket_checksum")
IDENTITY_COLUMNS = (
    *"ticket ticket_checksum backbone sam sharing stages density kept total".split(),
    *"ticket_kind baseline".split(),
)
RUN_COLUMNS = (
    *"task dataset eval_split select_split head protocol_id protocol".split(),
    *IDENTITY_COLUMNS,
    *"seed status reason metric higher_is_better value".split(),
    # extra_<name> columns go here (the numeric extras of the task's records)
    *"params_total params_sams params_backbone gflops gmacs input_shape".split(),
    *"latency_ms latency_device latency_ratio_full latency_flag".split(),
    *"run_dir code_version timestamp record".split(),
)
SUMMARY_COLUMNS = (
    *CELL_KEYS,
    "protocol",
    *IDENTITY_COLUMNS,
    *"metric higher_is_better n n_failed seeds mean std min max rank".split(),
    *"score score_n score_seeds score_reason".split(),
    *"params_total params_sams gflops latency_ms latency_device".split(),
    *"params_saved gflops_saved latency_saved latency_flag".split(),
    # extra_<name> columns (means over the finished seeds) go last
)
# rank_<task> columns follow these
RANK_COLUMNS = tuple("ticket ticket_checksum backbone sam sharing stages density".split()) + (
    "avg_rank",
    "n_tasks",
)

_REQUIRED = tuple(
    f"{part}.{name}"
    for part, names in (
        ("identity", IDENTITY_COLUMNS[:9]),
        ("setting", ("task", "dataset", "eval_split", "head")),
        ("result", ("metric", "value", "higher_is_better")),
        ("provenance", ("seed", "status")),
    )
    for name in names
)


# ---- collecting --------------------------------------------------------------------------
def _field(rec: Mapping[str, Any], path: Path, dotted: str) -> Any:
    cur: Any = rec
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise BenchError(f"{path}: field '{dotted}': missing")
        cur = cur[part]
    return cur


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def protocol_id(protocol: Mapping[str, Any]) -> str:
    """First 8 hex digits of the sha256 of the protocol's canonical JSON."""
    return value_sha256(dict(protocol), 8)


def _run_row(out_root: Path, path: Path, rec: Mapping[str, Any]) -> dict[str, Any]:
    for dotted in _REQUIRED:
        _field(rec, path, dotted)
    ident, setting, result = rec["identity"], rec["setting"], rec["result"]
    prov, cost = rec["provenance"], rec.get("cost") or {}
    protocol = rec.get("protocol") or {}
    status = prov["status"]
    value = result["value"]
    if status == "finished":
        if not _is_number(value) or not math.isfinite(value):
            raise BenchError(
                f"{path}: field 'result.value': expected a finite number in a finished record, "
                f"got {value!r}"
            )
    elif status != "failed":
        raise BenchError(f"{path}: field 'provenance.status': expected finished or failed")
    if not isinstance(result["higher_is_better"], bool):
        raise BenchError(f"{path}: field 'result.higher_is_better': expected true or false")
    if not isinstance(prov["seed"], int):
        raise BenchError(f"{path}: field 'provenance.seed': expected an integer")
    shape = cost.get("input_shape")
    row: dict[str, Any] = {
        "task": setting["task"],
        "dataset": setting["dataset"],
        "eval_split": setting["eval_split"],
        "select_split": setting.get("select_split"),
        "head": setting["head"],
        "protocol_id": protocol_id(protocol),
        "protocol": canonical_json(protocol),
        **{k: ident.get(k) for k in IDENTITY_COLUMNS},
        "seed": prov["seed"],
        "status": status,
        "reason": prov.get("reason"),
        "metric": result["metric"],
        "higher_is_better": result["higher_is_better"],
        "value": value if status == "finished" else None,
        "params_total": cost.get("params_total"),
        "params_sams": cost.get("params_sams"),
        "params_backbone": cost.get("params_backbone"),
        "gflops": cost.get("gflops"),
        "gmacs": cost.get("gmacs"),
        "input_shape": "x".join(str(d) for d in shape) if shape else None,
        "latency_ms": cost.get("latency_ms"),
        "latency_device": cost.get("latency_device"),
        "latency_ratio_full": cost.get("latency_ratio_full"),
        "latency_flag": cost.get("latency_flag"),
        "run_dir": prov.get("run_dir"),
        "code_version": prov.get("code_version"),
        "timestamp": prov.get("timestamp"),
        "record": path.relative_to(out_root).as_posix(),
    }
    for key, v in (result.get("extras") or {}).items():
        if _is_number(v):  # only numbers make plain columns (per-class lists stay in JSON)
            row[f"extra_{key}"] = v
    return row


def collect(out_root: str | Path) -> list[dict[str, Any]]:
    """One flat row per record (finished and failed), sorted by cell, ticket and seed."""
    out_root = Path(out_root)
    rows = [_run_row(out_root, p, rec) for p, rec in iter_records(out_root)]
    rows.sort(key=lambda r: (*(str(r[k]) for k in CELL_KEYS), r["ticket"], r["seed"]))
    return rows


# ---- transfer score ----------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    """A transfer score, the seeds its means used, and why it is NaN when it is."""

    value: float
    seeds: tuple[int, ...]
    reason: str | None = None


def _g(x: float) -> str:
    return f"{x:.4g}"


def transfer_score(
    ticket: Mapping[int, float],
    full: Mapping[int, float],
    none: Mapping[int, float],
    higher_is_better: bool,
) -> Score:
    """Share of the full-SAM gain the ticket keeps, from per-seed values {seed: value}.

    Uses the seeds all three share; NaN with a reason when fewer than 2 are shared, when the
    full-vs-none gap is within seed noise (|mean gap| <= the sample std of the per-seed gaps:
    the arms of one seed are paired), or when full is worse than none.
    """
    seeds = tuple(sorted(set(ticket) & set(full) & set(none)))
    if not seeds:
        return Score(NAN, seeds, "no seed shared by the ticket and its full and none controls")
    if len(seeds) < 2:
        return Score(
            NAN, seeds, f"1 shared seed ({seeds[0]}): seed noise cannot be judged (needs 2 or more)"
        )
    t, f, n = ([src[s] for s in seeds] for src in (ticket, full, none))
    sign = 1.0 if higher_is_better else -1.0
    mean_t, mean_f, mean_n = statistics.fmean(t), statistics.fmean(f), statistics.fmean(n)
    gain = sign * (mean_f - mean_n)
    noise = statistics.stdev(sign * (a - b) for a, b in zip(f, n))
    if abs(gain) <= noise:
        return Score(
            NAN,
            seeds,
            f"full-vs-none gap {_g(abs(gain))} is within seed noise (std of the per-seed gaps "
            f"{_g(noise)})",
        )
    if gain < 0:
        return Score(
            NAN,
            seeds,
            f"full is worse than none by {_g(-gain)} (beyond seed noise): no gain to share",
        )
    # + 0.0 turns the none control's -0.0 (lower-is-better metrics) into 0.0
    return Score(sign * (mean_t - mean_n) / gain + 0.0, seeds)


# ---- summarising -------------------------------------------------------------------------
def _mean(values: Iterable[Any]) -> float | int | None:
    """Mean of the numbers; a value every run shares is kept as is (parameter counts stay ints)."""
    vals = [v for v in values if _is_number(v)]
    if not vals:
        return None
    return vals[0] if all(v == vals[0] for v in vals) else statistics.fmean(vals)


def _saved(ticket: float | None, full: float | None) -> float | None:
    if ticket is None or full is None or full == 0:
        return None
    return 1.0 - ticket / full


def _group_rows(runs: Sequence[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(*(r[k] for k in CELL_KEYS), *(r[k] for k in TICKET_KEYS))].append(r)
    return groups


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


def _summary_row(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    first = members[0]
    done = [r for r in members if r["status"] == "finished"]
    by_seed: dict[int, Mapping[str, Any]] = {}
    for r in done:
        if r["seed"] in by_seed:
            raise BenchError(
                f"{r['record']}: field 'provenance.seed': seed {r['seed']} is also in "
                f"{by_seed[r['seed']]['record']} (same ticket, task, dataset, head, protocol)"
            )
        by_seed[r["seed"]] = r
    values = [r["value"] for r in done]
    devices = {r["latency_device"] for r in done if r["latency_ms"] is not None}
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
        "_latency_ratio": _mean(r["latency_ratio_full"] for r in done),
        "latency_flag": next((r["latency_flag"] for r in done if r["latency_flag"]), None),
        "_values": {s: r["value"] for s, r in by_seed.items()},
    }
    extras = sorted({k for r in done for k in r if k.startswith("extra_")})
    for key in extras:
        row[key] = _mean(r.get(key) for r in done)
    return row


def _controls(rows: Sequence[dict[str, Any]], row: Mapping[str, Any], which: str) -> list[dict]:
    return [
        c
        for c in rows
        if c["baseline"] == which
        and all(c[k] == row[k] for k in (*CELL_KEYS, "backbone", "sam", "sharing"))
    ]


def _score_row(rows: Sequence[dict[str, Any]], row: dict[str, Any]) -> None:
    full, none = _controls(rows, row, "full"), _controls(rows, row, "none")
    score = Score(NAN, ())
    for which, found in (("full", full), ("none", none)):
        if len(found) > 1:
            names = ", ".join(sorted(c["ticket"] for c in found))
            score = Score(NAN, (), f"{len(found)} {which} controls match ({names})")
        elif not found:
            score = Score(
                NAN,
                (),
                f"no {which} control ({row['backbone']}-{row['sam']}, sharing {row['sharing']}) "
                "with the same task, dataset, split, head and protocol",
            )
        if score.reason:
            break
    else:
        if row["n"] == 0:
            score = Score(NAN, (), "no finished run")
        else:
            score = transfer_score(
                row["_values"], full[0]["_values"], none[0]["_values"], row["higher_is_better"]
            )
    row["score"] = score.value
    row["score_n"] = len(score.seeds)
    row["score_seeds"] = " ".join(str(s) for s in score.seeds)
    row["score_reason"] = score.reason
    ref = full[0] if len(full) == 1 else None
    for key in ("params_total", "gflops"):
        row[key.split("_")[0] + "_saved"] = _saved(row[key], ref and ref[key])
    # Only a ratio timed side by side with the full network (one session) says anything.
    ratio = row["_latency_ratio"]
    row["latency_saved"] = None if ratio is None else 1.0 - ratio


def _rank_cells(rows: Sequence[dict[str, Any]]) -> None:
    cells: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["n"] > 0:
            cells[tuple(r[k] for k in CELL_KEYS)].append(r)
    for members in cells.values():
        sign = -1.0 if members[0]["higher_is_better"] else 1.0
        for r, rank in zip(members, rankdata([sign * r["mean"] for r in members])):
            r["rank"] = float(rank)


_CONTROL_ORDER = {"none": 0, "full": 1}


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per benchmark cell x ticket: seed statistics, rank, transfer score, savings."""
    _check_cell_metric(runs)
    rows = [_summary_row(members) for members in _group_rows(runs).values()]
    for row in rows:
        _score_row(rows, row)
    _rank_cells(rows)
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


def average_ranks(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per ticket: its mean cell rank per task, and the mean of those over its tasks."""
    per_task: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    first: dict[tuple, Mapping[str, Any]] = {}
    tasks = sorted({r["task"] for r in summary if r["rank"] is not None})
    for r in summary:
        if r["rank"] is None:
            continue
        key = tuple(r[k] for k in TICKET_KEYS)
        first.setdefault(key, r)
        per_task[key][r["task"]].append(r["rank"])
    out = []
    for key, ranks in per_task.items():
        task_ranks = {t: statistics.fmean(v) for t, v in ranks.items()}
        row = {k: first[key][k] for k in RANK_COLUMNS if k in first[key]}
        row["avg_rank"] = statistics.fmean(task_ranks.values())
        row["n_tasks"] = len(task_ranks)
        for t in tasks:
            row[f"rank_{t}"] = task_ranks.get(t)
        out.append(row)
    out.sort(key=lambda r: (-r["n_tasks"], r["avg_rank"], r["ticket"]))
    return out


@dataclass
class Leaderboard:
    """Everything `bench leaderboard` shows: runs, seed summaries and average ranks."""

    runs: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    ranks: list[dict[str, Any]]


def build(out_root: str | Path) -> Leaderboard:
    """Collect every record under <out>/records and summarise it."""
    runs = collect(out_root)
    if not runs:
        raise BenchError(
            f"{Path(out_root) / RECORDS_DIR}: no result records (run bench train or transfer)"
        )
    summary = summarize(runs)
    return Leaderboard(runs, summary, average_ranks(summary))


# ---- export ------------------------------------------------------------------------------
def _columns(base: Sequence[str], rows: Sequence[Mapping[str, Any]], prefix: str) -> list[str]:
    extra = sorted({k for r in rows for k in r if k.startswith(prefix)} - set(base))
    if "value" in base:  # per-run tables: extras right after the value
        i = list(base).index("value") + 1
        return [*base[:i], *extra, *base[i:]]
    return [*base, *extra]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def to_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """Plain CSV: empty cell = not applicable, "nan" = undefined (with a reason column)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def _decimals(x: float) -> int:
    # About 4 significant digits: 76.13, 0.9234, 10.6, 1234
    if not math.isfinite(x) or x == 0:
        return 2
    return max(0, min(4, 3 - math.floor(math.log10(abs(x)))))


def _result_text(r: Mapping[str, Any], pm: str) -> str:
    if r["n"] == 0:
        return "failed"
    d = _decimals(r["mean"])
    if r["n"] == 1:
        return f"{r['mean']:.{d}f}"
    return f"{r['mean']:.{d}f}{pm}{r['std']:.{d}f}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _n_text(r: Mapping[str, Any]) -> str:
    return f"{r['n']} ({r['n_failed']} failed)" if r["n_failed"] else str(r["n"])


def _table_cells(
    summary: Sequence[Mapping[str, Any]], *, pm: str, arrows: tuple[str, str], pct: str = "%"
) -> tuple[list[str], list[list[str]], list[bool], list[str]]:
    """Header, cells, best-in-cell flags and score notes shared by Markdown and LaTeX."""
    show_protocol = len({r["protocol_id"] for r in summary}) > 1
    header = ["Task", "Dataset", "Head"] + (["Protocol"] if show_protocol else [])
    header += ["Ticket", "Stages", "Density", "Metric", "Result", "n", "Score"]
    header += ["Params saved", "GFLOPs saved", "Latency saved", "Rank"]
    body, best, notes = [], [], []
    for r in summary:
        score = f"{r['score']:.2f}"
        if r["score_reason"]:
            # One note per cell and reason: a cell's controls often share theirs.
            note = f"{r['task']}/{r['dataset']} ({r['head']}): {r['score_reason']}"
            if note not in notes:
                notes.append(note)
            score = f"n/a [{notes.index(note) + 1}]"
        latency = _pct(r["latency_saved"]).replace("%", pct)
        if r["latency_flag"] and latency:
            note = f"{r['task']}/{r['dataset']} ({r['head']}) {r['ticket']}: {r['latency_flag']}"
            notes.append(note)
            latency += f" [{len(notes)}]"
        cells = [r["task"], r["dataset"], r["head"]] + ([r["protocol_id"]] if show_protocol else [])
        cells += [
            r["ticket"],
            r["stages"],
            f"{r['density']:.3f}",
            f"{r['metric']} {arrows[0] if r['higher_is_better'] else arrows[1]}",
            _result_text(r, pm),
            _n_text(r),
            score,
            _pct(r["params_saved"]).replace("%", pct),
            _pct(r["gflops_saved"]).replace("%", pct),
            latency,
            "" if r["rank"] is None else f"{r['rank']:g}",
        ]
        body.append(cells)
        best.append(r["rank"] is not None and r["rank"] == _best_rank(summary, r))
    return header, body, best, notes


def _best_rank(summary: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> float:
    cell = tuple(row[k] for k in CELL_KEYS)
    return min(
        r["rank"]
        for r in summary
        if r["rank"] is not None and tuple(r[k] for k in CELL_KEYS) == cell
    )


def _rank_table(ranks: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    tasks = sorted({k[5:] for r in ranks for k in r if k.startswith("rank_")})
    header = ["Ticket", "Stages", "Avg rank", "Tasks", *tasks]
    body = [
        [
            r["ticket"],
            r["stages"],
            f"{r['avg_rank']:.2f}",
            str(r["n_tasks"]),
            *("" if r.get(f"rank_{t}") is None else f"{r[f'rank_{t}']:.2f}" for t in tasks),
        ]
        for r in ranks
    ]
    return header, body


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body]
    return lines


def to_markdown(summary: Sequence[Mapping[str, Any]], ranks: Sequence[Mapping[str, Any]]) -> str:
    """The summary (best result per cell in bold, NaN scores footnoted) and the rank table."""
    header, body, best, notes = _table_cells(summary, pm=" ± ", arrows=("↑", "↓"))
    res = header.index("Result")
    for cells, is_best in zip(body, best):
        if is_best:
            cells[res] = f"**{cells[res]}**"
    lines = _md_table(header, body)
    if notes:
        lines += [""] + [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    if ranks:
        lines += ["", "Average rank across tasks (1 = best):", ""]
        lines += _md_table(*_rank_table(ranks))
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # Outside T1 font encoding these three print as other glyphs.
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group()], text)


def _latex_table(
    header: Sequence[str], body: Sequence[Sequence[str]], right: set[int], raw: set[int]
) -> list[str]:
    spec = "".join("r" if i in right else "l" for i in range(len(header)))
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(latex_escape(h) for h in header) + r" \\")
    lines.append(r"\midrule")
    for row in body:
        cells = [c if i in raw else latex_escape(c) for i, c in enumerate(row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def to_latex(summary: Sequence[Mapping[str, Any]], ranks: Sequence[Mapping[str, Any]]) -> str:
    """booktabs tabulars: the summary (best per cell in bold, NaN scores footnoted) and ranks."""
    header, body, best, notes = _table_cells(
        summary, pm=r"$\pm$", arrows=(r"$\uparrow$", r"$\downarrow$"), pct=r"\%"
    )
    res, metric = header.index("Result"), header.index("Metric")
    saved = {header.index(h) for h in ("Params saved", "GFLOPs saved", "Latency saved")}
    for cells, is_best in zip(body, best):
        # Metric and Result carry LaTeX markup; escape their plain parts here.
        name, arrow = cells[metric].rsplit(" ", 1)
        cells[metric] = f"{latex_escape(name)} {arrow}"
        if is_best and cells[res] != "failed":
            cells[res] = rf"\textbf{{{cells[res]}}}"
    numeric = {header.index(h) for h in ("Density", "Result", "n", "Score", "Rank")} | saved
    lines = _latex_table(header, body, right=numeric, raw={metric, res} | saved)
    if notes:
        lines += [""] + [rf"% [{i}] {latex_escape(note)}" for i, note in enumerate(notes, 1)]
    if ranks:
        rh, rb = _rank_table(ranks)
        lines += [""] + _latex_table(rh, rb, right=set(range(2, len(rh))), raw=set())
    return "\n".join(lines) + "\n"


# ---- the command -------------------------------------------------------------------------
Filter = str | Sequence[str] | None


def _matches(value: Any, pattern: Filter) -> bool:
    if pattern is None:
        return True
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return any(fnmatch.fnmatchcase(str(value), p) for p in patterns)


def _filter_tag(**filters: Filter) -> str:
    parts = []
    for name, pattern in filters.items():
        if pattern is not None:
            text = pattern if isinstance(pattern, str) else "+".join(pattern)
            parts.append(f"{name}-{re.sub(r'[^A-Za-z0-9.-]+', '_', text)}")
    return "".join(f"__{p}" for p in parts)


def write_tables(out_root: str | Path, lb: Leaderboard) -> list[Path]:
    """Write <task>.csv per task, summary.csv and ranks.csv atomically; return their paths."""
    out = Path(out_root) / LEADERBOARD_DIR
    written = []
    for task in sorted({r["task"] for r in lb.runs}):
        rows = [r for r in lb.runs if r["task"] == task]
        path = out / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', task)}.csv"
        atomic_write_text(path, to_csv(_columns(RUN_COLUMNS, rows, "extra_"), rows))
        written.append(path)
    for name, base, rows, prefix in (
        ("summary", SUMMARY_COLUMNS, lb.summary, "extra_"),
        ("ranks", RANK_COLUMNS, lb.ranks, "rank_"),
    ):
        path = out / f"{name}.csv"
        atomic_write_text(path, to_csv(_columns(base, rows, prefix), rows))
        written.append(path)
    return written


def leaderboard(
    out_root: str | Path,
    *,
    fmt: str = "csv",
    task: Filter = None,
    dataset: Filter = None,
    ticket: Filter = None,
    plot: bool = False,
) -> tuple[str, list[Path]]:
    """Collect the records under `out_root`, write the leaderboards and return the summary
    table as text in `fmt` (csv, md or latex) with the paths written.

    Filters are shell-style globs (or lists of them) on task, dataset and ticket name; they
    shape the returned table, its md/latex file and the plots, never the CSV data files.
    Scores and cell ranks always use every ticket (a ticket's controls stay in scope); the
    average rank is over the tasks left by the task and dataset filters.
    """
    if fmt not in FORMATS:
        raise BenchError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    lb = build(out_root)
    written = write_tables(out_root, lb)
    in_scope = [
        r for r in lb.summary if _matches(r["task"], task) and _matches(r["dataset"], dataset)
    ]
    summary = [r for r in in_scope if _matches(r["ticket"], ticket)]
    if not summary:
        raise BenchError(
            f"{Path(out_root) / RECORDS_DIR}: no records match --task {task or '*'} "
            f"--dataset {dataset or '*'} --ticket {ticket or '*'}"
        )
    ranks = [r for r in average_ranks(in_scope) if _matches(r["ticket"], ticket)]
    tag = _filter_tag(task=task, dataset=dataset, ticket=ticket)
    out = Path(out_root) / LEADERBOARD_DIR
    if fmt == "csv":
        text = to_csv(_columns(SUMMARY_COLUMNS, summary, "extra_"), summary)
    else:
        text = to_markdown(summary, ranks) if fmt == "md" else to_latex(summary, ranks)
        path = out / f"summary{tag}.{'md' if fmt == 'md' else 'tex'}"
        atomic_write_text(path, text)
        written.append(path)
    if plot:
        from bench.plots import plot_leaderboard

        written += plot_leaderboard(summary, out / f"plots{tag}")
    return text, written
