"""Result records -> one flat row each, from one or several output roots.

A grid split over clusters leaves its records under several roots. The same record found
under two roots (a copied folder) counts once; two *different* records of the same run
(same benchmark cell, ticket and seed) are refused: the leaderboard cannot know which one
is the run's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.runs.records import iter_records, protocol_id
from bench.util.errors import BenchError
from bench.util.fingerprint import canonical_json

__all__ = ["CELL_KEYS", "IDENTITY_COLUMNS", "RUN_COLUMNS", "TICKET_KEYS", "collect"]

# A benchmark cell: only records of one cell are compared.
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
    *"latency_ms latency_device latency_ratio_full latency_ratio_full_lo".split(),
    *"latency_ratio_full_hi latency_flag".split(),
    *"run_dir code_version timestamp record".split(),
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


def _field(rec: Mapping[str, Any], path: Path, dotted: str) -> Any:
    cur: Any = rec
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise BenchError(f"{path}: field '{dotted}': missing")
        cur = cur[part]
    return cur


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check(path: Path, rec: Mapping[str, Any]) -> None:
    for dotted in _REQUIRED:
        _field(rec, path, dotted)
    result, prov = rec["result"], rec["provenance"]
    if prov["status"] == "finished":
        value = result["value"]
        if not is_number(value) or not math.isfinite(value):
            raise BenchError(
                f"{path}: field 'result.value': expected a finite number in a finished record, "
                f"got {value!r}"
            )
    elif prov["status"] != "failed":
        raise BenchError(f"{path}: field 'provenance.status': expected finished or failed")
    if not isinstance(result["higher_is_better"], bool):
        raise BenchError(f"{path}: field 'result.higher_is_better': expected true or false")
    if not isinstance(prov["seed"], int):
        raise BenchError(f"{path}: field 'provenance.seed': expected an integer")


def _ratio_ci(cost: Mapping[str, Any], path: Path) -> tuple[float | None, float | None]:
    ci = cost.get("latency_ratio_full_ci")
    if ci is None:
        return None, None
    if not (isinstance(ci, list) and len(ci) == 2 and all(is_number(x) for x in ci)):
        raise BenchError(f"{path}: field 'cost.latency_ratio_full_ci': expected [lo, hi]")
    return ci[0], ci[1]


def _run_row(record_name: str, path: Path, rec: Mapping[str, Any]) -> dict[str, Any]:
    _check(path, rec)
    ident, setting, result = rec["identity"], rec["setting"], rec["result"]
    prov, cost = rec["provenance"], rec.get("cost") or {}
    protocol = rec.get("protocol") or {}
    finished = prov["status"] == "finished"
    shape = cost.get("input_shape")
    ratio_lo, ratio_hi = _ratio_ci(cost, path)
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
        "status": prov["status"],
        "reason": prov.get("reason"),
        "metric": result["metric"],
        "higher_is_better": result["higher_is_better"],
        "value": result["value"] if finished else None,
        **{k: cost.get(k) for k in ("params_total", "params_sams", "params_backbone")},
        "gflops": cost.get("gflops"),
        "gmacs": cost.get("gmacs"),
        "input_shape": "x".join(str(d) for d in shape) if shape else None,
        "latency_ms": cost.get("latency_ms"),
        "latency_device": cost.get("latency_device"),
        "latency_ratio_full": cost.get("latency_ratio_full"),
        "latency_ratio_full_lo": ratio_lo,
        "latency_ratio_full_hi": ratio_hi,
        "latency_flag": cost.get("latency_flag"),
        "run_dir": prov.get("run_dir"),
        "code_version": prov.get("code_version"),
        "timestamp": prov.get("timestamp"),
        "record": record_name,
    }
    for key, v in (result.get("extras") or {}).items():
        if is_number(v):  # only numbers make plain columns (per-class lists stay in JSON)
            row[f"extra_{key}"] = v
    return row


def _run_key(row: Mapping[str, Any]) -> tuple:
    return (*(row[k] for k in CELL_KEYS), *(row[k] for k in TICKET_KEYS), row["seed"])


def collect(out_root: str | Path, *more_roots: str | Path) -> list[dict[str, Any]]:
    """One flat row per record (finished and failed) under every root's records/, sorted by
    cell, ticket and seed. `record` is the path relative to `out_root` for its own records,
    the full path for the others'. Two different records of one run: BenchError."""
    rows: list[dict[str, Any]] = []
    seen: dict[tuple, tuple[Path, str]] = {}
    for i, root in enumerate(Path(r) for r in (out_root, *more_roots)):
        for path, rec in iter_records(root):
            name = path.relative_to(root).as_posix() if i == 0 else str(path)
            row = _run_row(name, path, rec)
            text = canonical_json(rec)
            key = _run_key(row)
            if key in seen:
                if seen[key][1] != text:
                    raise BenchError(
                        f"{path}: a different record of the same run as {seen[key][0]} "
                        f"({row['task']}/{row['dataset']}, {row['ticket']}, seed {row['seed']}); "
                        "keep one of them"
                    )
                continue  # the same record twice (a copied root) counts once
            seen[key] = (path, text)
            rows.append(row)
    rows.sort(key=lambda r: (*(str(r[k]) for k in CELL_KEYS), r["ticket"], r["seed"]))
    return rows
