"""The plan and the states as text and as JSON (`bench study plan|status`)."""

from __future__ import annotations

from typing import Any

from bench.study.plan import Plan
from bench.study.state import STATES, CellState


def images(n: int | None) -> str:
    """12345678 -> "12.3M images"; None -> "work unknown"."""
    if n is None:
        return "work unknown"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit} images ({n:,})"
    return f"{n} images"


def state_line(cell_id: str, s: CellState) -> str:
    detail = s.detail
    if s.state == "waiting":
        names = s.detail.split(", ")
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        detail = f"on {', '.join(names[:3])}{more}"
    return f"{s.state:<8} {cell_id}" + (f"  ({detail})" if detail else "")


def plan_text(plan: Plan, states: dict[str, CellState]) -> str:
    known = [c.work for c in plan.cells if c.work is not None]
    lines = [
        f"study {plan.study.name} ({plan.study.path}): {len(plan.cells)} cells, "
        f"runs in {plan.study.out}, work {images(sum(known))} over the cells that "
        "name theirs"
    ]
    for cell in plan.cells:
        s = states[cell.id]
        lines += ["", state_line(cell.id, s), f"    {cell.command}"]
        if cell.deps:
            lines.append(f"    after: {', '.join(cell.deps)}")
        if cell.kind in ("search", "train", "transfer"):
            lines.append(f"    work: {images(cell.work)}")
        if s.runs:
            lines.append(f"    runs: {' '.join(str(p) for p in s.runs)}")
    lines += [f"note: {n}" for n in plan.notes]
    return "\n".join(lines)


def status_text(plan: Plan, states: dict[str, CellState]) -> str:
    lines = [state_line(c.id, states[c.id]) for c in plan.cells]
    counts = [f"{sum(s.state == k for s in states.values())} {k}" for k in STATES]
    return "\n".join([*lines, f"{plan.study.name}: " + ", ".join(counts)])


def plan_json(plan: Plan, states: dict[str, CellState]) -> dict[str, Any]:
    return {
        "study": plan.study.name,
        "file": str(plan.study.path),
        "out": str(plan.study.out),
        "cells": [
            {
                "id": c.id,
                "kind": c.kind,
                "command": c.command,
                "argv": list(c.argv),
                "deps": list(c.deps),
                "gpus": c.gpus,
                "work_images": c.work,
                "state": states[c.id].state,
                "detail": states[c.id].detail,
                "runs": [str(p) for p in states[c.id].runs],
            }
            for c in plan.cells
        ],
        "notes": list(plan.notes),
    }
