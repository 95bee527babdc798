"""Leaderboard plots: per task a forest plot of each ticket's difference vs full with its
interval and the tolerance band, metric vs density, metric vs latency with its Pareto
front; and the compared tickets' masks drawn per stage. Each figure is saved as PNG and PDF.

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`, rendered by Agg
for PNG), never pyplot: no global state, no display needed. Input rows are
`bench.report.summary` rows.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from bench.report.collect import CELL_KEYS
from bench.util.io import atomic_write_bytes
from bench.util.paths import slug

__all__ = [
    "draw_masks",
    "forest",
    "metric_vs_density",
    "metric_vs_latency",
    "pareto_front",
    "plot_leaderboard",
    "save_figure",
]

Row = Mapping[str, Any]
# Draws one cell's panel: (axes, the cell's rows, several protocols?, colours) -> legend rows.
Panel = Callable[[Any, list[Row], bool, dict[str, str]], Sequence[Row]]
# Controls get fixed markers so they read at a glance; random baselines are a cloud.
MARKERS = {"none": "s", "full": "D", "random": "x"}


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points (cost, metric) no other point beats on both, by rising cost.

    A point is dominated when another costs no more and scores at least as well, strictly
    better in one of the two. Equal points are all kept.
    """
    sign = 1.0 if higher_is_better else -1.0
    front = []
    for i, (ci, mi) in enumerate(points):
        dominated = any(
            cj <= ci and sign * mj >= sign * mi and (cj < ci or sign * mj > sign * mi)
            for j, (cj, mj) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -sign * points[i][1]))


def _cells(rows: Sequence[Row]) -> dict[tuple, list[Row]]:
    cells: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r["n"] > 0:
            cells[tuple(r[k] for k in CELL_KEYS)].append(r)
    return dict(sorted(cells.items(), key=lambda kv: tuple(map(str, kv[0]))))


def _title(cell_rows: Sequence[Row], multi_protocol: bool) -> str:
    r = cell_rows[0]
    title = f"{r['dataset']} ({r['eval_split']}), {r['head']}"
    return f"{title}, protocol {r['protocol_id']}" if multi_protocol else title


def _ylabel(r: Row) -> str:
    return f"{r['metric']} ({'higher' if r['higher_is_better'] else 'lower'} is better)"


def _family(r: Row) -> str:
    return f"{r['backbone']}-{r['sam']} ({r['sharing']})"


def _grid(n: int) -> tuple[Figure, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(5.2 * cols, 4.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _scatter(ax: Any, rows: Sequence[Row], x_key: str, colors: dict[str, str]) -> None:
    for r in rows:
        x, y = r[x_key], r["mean"]
        err = r["std"] if r["n"] > 1 and math.isfinite(r["std"]) else None
        marker = MARKERS.get(r["baseline"] or "", "o")
        ax.errorbar(x, y, yerr=err, fmt=marker, color=colors[_family(r)], capsize=3, ms=6)
        if r["baseline"] != "random":
            ax.annotate(r["ticket"], (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)


def _family_legend(ax: Any, colors: dict[str, str], rows: Sequence[Row]) -> None:
    for fam, color in colors.items():
        ax.plot([], [], "o", color=color, label=fam)
    kinds = {r["baseline"] for r in rows}
    for kind, marker in MARKERS.items():
        if kind in kinds:
            ax.plot([], [], marker, color="0.4", label=kind)
    ax.legend(fontsize=7, loc="best")


def _colors(rows: Sequence[Row]) -> dict[str, str]:
    families = sorted({_family(r) for r in rows})
    return {f: f"C{i % 10}" for i, f in enumerate(families)}


def _cell_figure(
    rows: Sequence[Row], cells: dict[tuple, list[Row]], x: str, x_label: str, draw: Panel
) -> Figure:
    """One panel per benchmark cell: `draw(ax, cell_rows, multi_protocol, colors)` plots a
    cell and returns the rows its legend names; the labels, grid and legend are common."""
    multi = len({k[-1] for k in cells}) > 1
    colors = _colors(rows)
    fig, axes = _grid(len(cells))
    for ax, cell_rows in zip(axes, cells.values()):
        shown = draw(ax, cell_rows, multi, colors)
        ax.set_xlabel(x_label)
        ax.set_ylabel(_ylabel(cell_rows[0]))
        ax.grid(alpha=0.3)
        _family_legend(ax, colors, shown)
    fig.suptitle(f"{rows[0]['task']}: metric vs {x}")
    return fig


def metric_vs_density(rows: Sequence[Row]) -> Figure:
    """One panel per benchmark cell of one task: mean metric (± std) against mask density."""
    cells = _cells(rows)
    if not cells:
        raise ValueError("no finished runs to plot")

    def draw(ax: Any, cell_rows: list[Row], multi: bool, colors: dict[str, str]) -> list[Row]:
        _scatter(ax, cell_rows, "density", colors)
        ax.set_title(_title(cell_rows, multi), fontsize=9)
        ax.set_xlim(-0.05, 1.05)
        return cell_rows

    return _cell_figure(rows, cells, "density", "density (kept SAM slots / all)", draw)


def metric_vs_latency(rows: Sequence[Row]) -> Figure:
    """One panel per cell: mean metric against measured latency, Pareto front drawn.

    Only the tickets timed on the cell's most common device are compared; the panel title
    says how many others were left out.
    """
    cells = _cells([r for r in rows if r["latency_ms"] is not None])
    if not cells:
        raise ValueError("no finished run with a measured latency to plot")

    def draw(ax: Any, cell_rows: list[Row], multi: bool, colors: dict[str, str]) -> list[Row]:
        device, _ = Counter(r["latency_device"] for r in cell_rows).most_common(1)[0]
        same = [r for r in cell_rows if r["latency_device"] == device]
        _scatter(ax, same, "latency_ms", colors)
        hib = same[0]["higher_is_better"]
        front = [same[i] for i in pareto_front([(r["latency_ms"], r["mean"]) for r in same], hib)]
        ax.step(
            [r["latency_ms"] for r in front],
            [r["mean"] for r in front],
            where="post",
            color="0.2",
            lw=1,
            ls="--",
            label="Pareto front",
        )
        left_out = len(cell_rows) - len(same)
        note = f"\n{left_out} left out (timed on another device)" if left_out else ""
        ax.set_title(f"{_title(cell_rows, multi)}\n{device}{note}", fontsize=8)
        return same

    return _cell_figure(rows, cells, "latency", "latency (ms)", draw)


def _has_vs_full(r: Row) -> bool:
    return r["vs_full_rel"] is not None and math.isfinite(r["vs_full_rel"])


def forest(rows: Sequence[Row]) -> Figure:
    """One task's forest plot: per cell, each ticket's relative difference vs full (%) with
    its 95% t-interval (a hollow marker without one, at n = 1), the accuracy tolerance band
    shaded around 0. Rows without a difference vs full (the full control) are left out."""
    shown = [r for r in rows if _has_vs_full(r)]
    if not shown:
        raise ValueError("no difference vs full to plot")
    shown.sort(key=lambda r: (tuple(str(r[k]) for k in CELL_KEYS), r["ticket"]))
    tol = shown[0]["tolerance_pct"]
    multi = len({r["protocol_id"] for r in shown}) > 1
    labels = [f"{_title([r], multi)}: {r['ticket']} (n={r['vs_full_n']})" for r in shown]
    # Room for the longest row label beside a plot wide enough for the axis label.
    fig_w = 5.5 + 0.055 * max(map(len, labels))
    fig = Figure(figsize=(fig_w, 1.2 + 0.32 * len(shown)), layout="constrained")
    ax = fig.add_subplot()
    ax.axvspan(-tol, tol, color="C2", alpha=0.15, lw=0, label=f"tolerance ±{tol:g}%")
    ax.axvline(0.0, color="0.3", lw=0.8)
    for y, r in enumerate(reversed(shown)):
        x, lo, hi = r["vs_full_rel"], r["vs_full_rel_lo"], r["vs_full_rel_hi"]
        color = f"C{sorted({c['dataset'] for c in shown}).index(r['dataset']) % 10}"
        if lo is None or hi is None:
            ax.plot(x, y, "o", mfc="white", color=color)
        else:
            ax.errorbar(x, y, xerr=[[x - lo], [hi - x]], fmt="o", color=color, capsize=3)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels(labels[::-1], fontsize=7)
    ax.set_xlabel("difference vs full (% of full; + = ticket better), 95% t-interval")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{shown[0]['task']}: ticket vs full", fontsize=9)
    return fig


def draw_masks(tickets: Sequence[tuple[str, str]]) -> Figure:
    """One row per (name, stages) ticket: a filled square per connected block, an empty one
    per disconnected block, stages separated by a gap."""
    if not tickets:
        raise ValueError("no tickets to draw")
    width = max(len(s.replace("|", "")) + s.count("|") for _, s in tickets)
    # Room for the longest label and the title, whatever the network's depth.
    label = max(len(name) for name, _ in tickets)
    fig_w = max(5.5, 0.8 + 0.065 * label + 0.28 * width)
    fig = Figure(figsize=(fig_w, 0.8 + 0.36 * len(tickets)), layout="constrained")
    ax = fig.add_subplot()
    for row, (_, stages) in enumerate(tickets):
        y = len(tickets) - 1 - row
        x = 0
        for s, bits in enumerate(stages.split("|")):
            for b in bits:
                face = f"C{s % 10}" if b == "1" else "white"
                ax.add_patch(Rectangle((x + 0.1, y + 0.1), 0.8, 0.8, fc=face, ec="0.3", lw=0.8))
                x += 1
            x += 1  # the gap between stages
    ax.set_xlim(0, width)
    ax.set_ylim(0, len(tickets))
    ax.set_yticks([len(tickets) - 1 - i + 0.5 for i in range(len(tickets))])
    ax.set_yticklabels(
        [
            f"{name}  {s.replace('|', '').count('1')}/{len(s.replace('|', ''))}"
            for name, s in tickets
        ],
        fontsize=8,
    )
    ax.set_xticks([])
    ax.set_aspect("equal")
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle("SAM connection schemes per stage (filled = SAM kept)", fontsize=9)
    return fig


def save_figure(fig: Figure, base: str | Path) -> list[Path]:
    """Write `base`.png and `base`.pdf atomically; return both paths."""
    import io

    base = Path(base)
    paths = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        # No creation date, so the same figure gives the same PDF bytes.
        meta = {"CreationDate": None} if ext == "pdf" else {}
        fig.savefig(buf, format=ext, dpi=150, metadata=meta)
        path = base.with_suffix(f".{ext}")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def plot_leaderboard(summary: Sequence[Row], out_dir: str | Path) -> list[Path]:
    """Per task: the forest plot, metric vs density and (where timed) metric vs latency;
    and every compared ticket's mask. Returns the PNG and PDF paths written under `out_dir`."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    for task in sorted({r["task"] for r in summary}):
        rows = [r for r in summary if r["task"] == task]
        if not any(r["n"] > 0 for r in rows):
            continue
        if any(_has_vs_full(r) for r in rows):
            written += save_figure(forest(rows), out_dir / f"{slug(task)}_forest")
        written += save_figure(metric_vs_density(rows), out_dir / f"{slug(task)}_density")
        if any(r["n"] > 0 and r["latency_ms"] is not None for r in rows):
            written += save_figure(metric_vs_latency(rows), out_dir / f"{slug(task)}_latency")
    tickets = list(dict.fromkeys((r["ticket"], r["stages"]) for r in summary))
    if tickets:
        written += save_figure(draw_masks(tickets), out_dir / "masks")
    return written
