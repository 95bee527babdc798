"""Exporters: summary and rank rows as CSV (each number in its own column), Markdown and
LaTeX (booktabs) tables with "+0.41 [-1.20, +2.02]" cells, a verdict column and a caption
that states the rule and the tolerance.

Footnotes mark only real absences: a missing control or seed, a failed run, and the timing
session's latency flag.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bench.report.collect import CELL_KEYS

__all__ = ["caption", "columns", "latex_escape", "to_csv", "to_latex", "to_markdown"]

Row = Mapping[str, Any]


def columns(base: Sequence[str], rows: Sequence[Row], prefix: str) -> list[str]:
    """`base` plus the rows' `prefix`* columns (after `value` in per-run tables, else last)."""
    extra = sorted({k for r in rows for k in r if k.startswith(prefix)} - set(base))
    if "value" in base:
        i = list(base).index("value") + 1
        return [*base[:i], *extra, *base[i:]]
    return [*base, *extra]


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(float(v))  # no np.float64(...)
    return str(v)


def to_csv(cols: Sequence[str], rows: Sequence[Row]) -> str:
    """Plain CSV: empty cell = not applicable, "nan" = undefined (with a reason column)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_csv_cell(r.get(c)) for c in cols])
    return buf.getvalue()


# ---- the shared table cells ----------------------------------------------------------------
def caption(tolerance_pct: float) -> str:
    """What the table's numbers and verdicts mean, with the tolerance they were judged at."""
    return (
        "vs full / vs none: the ticket minus the control over the seeds both finished, signed "
        "so that + means the ticket is better, in % of the control's mean, with its 95% "
        "Student-t interval [lo, hi] (none at n = 1). Verdict vs full: accuracy keeps (lower "
        f"end at or above -{tolerance_pct:g}%), loses (upper end below -{tolerance_pct:g}%) or "
        "undecided; "
        "params and FLOPs cheaper or not from exact counts; latency faster only when the 95% "
        "interval of the ticket/full ratio, timed side by side, lies below 1."
    )


def _decimals(x: float) -> int:
    # About 4 significant digits: 76.13, 0.9234, 10.6, 1234
    if not math.isfinite(x) or x == 0:
        return 2
    return max(0, min(4, 3 - math.floor(math.log10(abs(x)))))


def _result_text(r: Row, pm: str) -> str:
    if r["n"] == 0:
        return "failed"
    d = _decimals(r["mean"])
    if r["n"] == 1:
        return f"{r['mean']:.{d}f}"
    return f"{r['mean']:.{d}f}{pm}{r['std']:.{d}f}"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def _n_text(r: Row) -> str:
    return f"{r['n']} ({r['n_failed']} failed)" if r["n_failed"] else str(r["n"])


def interval_text(value: float, lo: float | None, hi: float | None) -> str:
    """ "+0.41 [-1.20, +2.02]"; the value alone without an interval."""
    if lo is None or hi is None:
        return f"{value:+.2f}"
    return f"{value:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _is_missing(x: float | None) -> bool:
    return x is None or math.isnan(x)


class _Notes:
    """Numbered footnotes, each text once."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def _where(r: Row) -> str:
    return f"{r['task']}/{r['dataset']} ({r['head']})"


def _versus_text(r: Row, which: str, notes: _Notes) -> str:
    n, rel, reason = r[f"vs_{which}_n"], r[f"vs_{which}_rel"], r[f"vs_{which}_reason"]
    if n is None and reason is None:
        return ""  # the control's own row
    where = f"{_where(r)} {r['ticket']}"  # each reason names the control it concerns
    if _is_missing(rel):
        return "n/a " + notes.mark(f"{where}: {reason}")
    text = interval_text(rel, r[f"vs_{which}_rel_lo"], r[f"vs_{which}_rel_hi"])
    if n < r["n"]:  # a seed of the ticket has no control run: say so
        text += " " + notes.mark(f"{where}: {reason}")
    return text


def _verdict_text(r: Row) -> str:
    if r["verdict_accuracy"] is None:
        return ""
    return ", ".join(
        [
            r["verdict_accuracy"],
            r["verdict_params"] or "not counted",
            r["verdict_flops"] or "not counted",
            r["verdict_latency"] or "not timed",
        ]
    )


def _best_rank(summary: Sequence[Row], row: Row) -> float:
    cell = tuple(row[k] for k in CELL_KEYS)
    return min(
        r["rank"]
        for r in summary
        if r["rank"] is not None and tuple(r[k] for k in CELL_KEYS) == cell
    )


def _table_cells(
    summary: Sequence[Row], *, pm: str, arrows: tuple[str, str], pct: str = "%"
) -> tuple[list[str], list[list[str]], list[bool], list[str]]:
    """Header, cells, best-in-cell flags and footnotes shared by Markdown and LaTeX."""
    show_protocol = len({r["protocol_id"] for r in summary}) > 1
    header = ["Task", "Dataset", "Head"] + (["Protocol"] if show_protocol else [])
    header += ["Ticket", "Stages", "Density", "Metric", "Result", "n"]
    header += ["vs full (%)", "vs none (%)", "Gain share"]
    header += ["Params saved", "GFLOPs saved", "Latency saved"]
    header += ["Verdict vs full (accuracy, params, FLOPs, latency)", "Rank"]
    notes = _Notes()
    body, best = [], []
    for r in summary:
        latency = _pct(r["latency_saved"]).replace("%", pct)
        if r["latency_flag"] and latency:
            latency += " " + notes.mark(f"{_where(r)} {r['ticket']}: {r['latency_flag']}")
        share = "-" if _is_missing(r["gain_share"]) else f"{r['gain_share']:.2f}"
        cells = [r["task"], r["dataset"], r["head"]] + ([r["protocol_id"]] if show_protocol else [])
        cells += [
            r["ticket"],
            r["stages"],
            f"{r['density']:.3f}",
            f"{r['metric']} {arrows[0] if r['higher_is_better'] else arrows[1]}",
            _result_text(r, pm),
            _n_text(r),
            _versus_text(r, "full", notes),
            _versus_text(r, "none", notes),
            share,
            _pct(r["params_saved"]).replace("%", pct),
            _pct(r["gflops_saved"]).replace("%", pct),
            latency,
            _verdict_text(r),
            "" if r["rank"] is None else f"{r['rank']:g}",
        ]
        body.append(cells)
        best.append(r["rank"] is not None and r["rank"] == _best_rank(summary, r))
    return header, body, best, notes.texts


def _rank_table(ranks: Sequence[Row], pct: str = "%") -> tuple[list[str], list[list[str]]]:
    header = ["Rank", "Ticket", "Stages", "Accuracy kept", "Mean vs full (%)"]
    header += ["Params saved", "GFLOPs saved", "Latency saved", "Tasks"]
    body = [
        [
            str(r["rank"]),
            r["ticket"],
            r["stages"],
            f"{r['cells_kept']}/{r['n_cells']} cells",
            "" if r["mean_rel_vs_full"] is None else f"{r['mean_rel_vs_full']:+.2f}",
            *(_pct(r[k]).replace("%", pct) for k in ("params_saved", "gflops_saved")),
            _pct(r["latency_saved"]).replace("%", pct),
            r["tasks"],
        ]
        for r in ranks
    ]
    return header, body


RANK_CAPTION = (
    "Tickets across tasks, ranked by the cells where accuracy is kept, then the mean "
    "difference vs full, then the mean parameters saved."
)


# ---- Markdown --------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body]
    return lines


def to_markdown(summary: Sequence[Row], ranks: Sequence[Row], tolerance_pct: float) -> str:
    """Caption, the summary (best result per cell in bold, absences footnoted), the ranks."""
    header, body, best, notes = _table_cells(summary, pm=" ± ", arrows=("↑", "↓"))
    res = header.index("Result")
    for cells, is_best in zip(body, best):
        if is_best:
            cells[res] = f"**{cells[res]}**"
    lines = [caption(tolerance_pct), "", *_md_table(header, body)]
    if notes:
        lines += [""] + [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    if ranks:
        lines += ["", RANK_CAPTION, ""]
        lines += _md_table(*_rank_table(ranks))
    return "\n".join(lines) + "\n"


# ---- LaTeX -----------------------------------------------------------------------------------
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
    header: Sequence[str],
    body: Sequence[Sequence[str]],
    right: set[int],
    raw: set[int],
    title: str,
) -> list[str]:
    spec = "".join("r" if i in right else "l" for i in range(len(header)))
    lines = [r"\begin{table}", r"\centering", rf"\caption{{{latex_escape(title)}}}"]
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    lines.append(" & ".join(latex_escape(h) for h in header) + r" \\")
    lines.append(r"\midrule")
    for row in body:
        cells = [c if i in raw else latex_escape(c) for i, c in enumerate(row)]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return lines


def to_latex(summary: Sequence[Row], ranks: Sequence[Row], tolerance_pct: float) -> str:
    """booktabs tables with captions: the summary (best per cell in bold, absences
    footnoted as comments) and the ranks."""
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
    numbers = ("Density", "Result", "n", "vs full (%)", "vs none (%)", "Gain share", "Rank")
    numeric = {header.index(h) for h in numbers} | saved
    title = caption(tolerance_pct)
    lines = _latex_table(header, body, right=numeric, raw={metric, res} | saved, title=title)
    if notes:
        lines += [""] + [rf"% [{i}] {latex_escape(note)}" for i, note in enumerate(notes, 1)]
    if ranks:
        rh, rb = _rank_table(ranks, pct=r"\%")
        raw = {5, 6, 7}
        lines += [""] + _latex_table(rh, rb, right={0, 3, 4, 5, 6, 7}, raw=raw, title=RANK_CAPTION)
    return "\n".join(lines) + "\n"
