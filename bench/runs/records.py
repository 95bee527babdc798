"""The uniform result record: one small JSON per (ticket, task, dataset, seed) run.

Every command that produces a final number (train, eval, transfer) writes one, finished
or failed, so each number in a leaderboard traces back to the run that made it. Records
live under <out>/records/<task>/<dataset>/ with unique names and are written atomically,
so any number of processes can write at once without losing one.

`protocol` holds only what makes runs comparable: it must be identical for a ticket and
its controls and across seeds (the leaderboard groups by it), so no seed, path, timing
or cache state goes there; such run facts belong in `extras` or `provenance`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bench.cost.measure import Cost
from bench.ticket.schema import Ticket
from bench.util.environment import environment
from bench.util.errors import BenchError
from bench.util.fingerprint import value_sha256
from bench.util.io import atomic_write_json, read_json, remove_stale_temps
from bench.util.paths import slug

SCHEMA_VERSION = 1
RECORDS_DIR = "records"
STATUSES = ("finished", "failed")


@functools.cache
def code_version() -> str:
    """Package version plus the git commit (and '-dirty') when run from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("ticketbench")
    except PackageNotFoundError:
        ver = "unknown"
    root = Path(__file__).resolve().parents[2]  # the checkout
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=10"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{ver}+{sha}" if sha else ver


def ticket_identity(ticket: Ticket) -> dict[str, Any]:
    return {
        "ticket": ticket.name,
        "ticket_checksum": ticket.checksum,
        "backbone": ticket.backbone,
        "sam": ticket.sam,
        "sharing": ticket.sharing,
        "stages": ticket.stages,
        "density": ticket.density,
        "kept": ticket.kept,
        "total": ticket.total,
        "ticket_kind": ticket.provenance.get("kind"),
        "baseline": ticket.provenance.get("baseline"),
    }


SESSION_COST_KEYS = (
    "latency_ratio_full",
    "latency_ratio_none",
    "latency_ratio_full_ci",
    "latency_ratio_none_ci",
    "latency_ci_rel",
    "latency_flag",
    "threads",
    "session",
)


def cost_fields(cost: Cost | Mapping[str, Any] | None) -> dict[str, Any]:
    if cost is None:
        return {}
    c = cost.as_dict() if isinstance(cost, Cost) else dict(cost)
    return {
        "params_total": c.get("params_total"),
        "params_sams": c.get("params_sams"),
        "params_backbone": c.get("params_backbone"),
        "gflops": None if c.get("flops") is None else c["flops"] / 1e9,
        "gmacs": c.get("gmacs"),
        "input_shape": list(c["input_shape"]) if c.get("input_shape") else None,
        "latency_ms": c.get("latency_ms"),
        "latency_device": c.get("latency_device"),
        # From a side-by-side session (bench.cost.table): the ratios "latency saved" uses.
        **{k: c[k] for k in SESSION_COST_KEYS if k in c},
    }


def make_record(
    *,
    ticket: Ticket,
    task: str,
    dataset: str,
    eval_split: str,
    select_split: str | None,
    head: str,
    metric: str,
    value: float | None,
    higher_is_better: bool,
    seed: int,
    run_dir: str | Path,
    extras: Mapping[str, Any] | None = None,
    cost: Cost | Mapping[str, Any] | None = None,
    protocol: Mapping[str, Any] | None = None,
    status: str = "finished",
    reason: str | None = None,
    evaluates: str | None = None,
) -> dict[str, Any]:
    """Build a record; a failed run has value None and a reason. `evaluates`: the checksum
    of the checkpoint a `bench eval` scored (its record never replaces a run's)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: expected one of {STATUSES}")
    if status == "failed" and not reason:
        raise ValueError("a failed record needs a reason")
    return {
        "schema_version": SCHEMA_VERSION,
        "identity": ticket_identity(ticket),
        "setting": {
            "task": task,
            "dataset": dataset,
            "eval_split": eval_split,
            "select_split": select_split,
            "head": head,
        },
        "result": {
            "metric": metric,
            "value": value,
            "higher_is_better": higher_is_better,
            "extras": dict(extras or {}),
        },
        "cost": cost_fields(cost),
        "protocol": dict(protocol or {}),
        "provenance": {
            "run_dir": str(run_dir),
            "status": status,
            "reason": reason,
            "seed": seed,
            "code_version": code_version(),
            "schema_version": SCHEMA_VERSION,
            "timestamp": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            # torch, device, threads, determinism flags and their fingerprint: which
            # machines reproduce this number bit for bit (never part of `protocol`).
            "environment": environment(),
            **({"evaluates": evaluates} if evaluates else {}),
        },
    }


def record_path(out_root: str | Path, record: Mapping[str, Any]) -> Path:
    """<out>/records/<task>/<dataset>/<ticket>__<checksum>__<head>__<split>__seed<N>.json;
    a `bench eval` record ends __seed<N>__eval-<checkpoint checksum>.json instead."""
    s, i, prov = record["setting"], record["identity"], record["provenance"]
    checksum = i["ticket_checksum"].split(":")[-1]
    head, split, seed = slug(s["head"]), slug(s["eval_split"]), prov["seed"]
    name = f"{slug(i['ticket'])}__{checksum}__{head}__{split}__seed{seed}"
    if prov.get("evaluates"):
        name += f"__eval-{slug(prov['evaluates'])}"
    return Path(out_root) / RECORDS_DIR / slug(s["task"]) / slug(s["dataset"]) / f"{name}.json"


def write_record(out_root: str | Path, record: Mapping[str, Any]) -> Path:
    """Write atomically (after clearing what a killed write of it left); a rerun of the same
    cell replaces its record."""
    path = record_path(out_root, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    atomic_write_json(path, record)
    return path


def drop_failed(out_root: str | Path, record: Mapping[str, Any]) -> list[Path]:
    """Remove the failed records (and tracebacks) of the cell a finished `record` now answers:
    same task, dataset, ticket and seed, whatever head a failure could name."""
    s, i = record["setting"], record["identity"]
    checksum = i["ticket_checksum"].split(":")[-1]
    folder = Path(out_root) / RECORDS_DIR / slug(s["task"]) / slug(s["dataset"])
    pattern = f"{slug(i['ticket'])}__{checksum}__*__seed{record['provenance']['seed']}.json"
    removed = []
    for path in folder.glob(pattern):
        try:
            stale = read_json(path)["provenance"]["status"] == "failed"
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if stale:
            path.unlink(missing_ok=True)
            path.with_suffix(".traceback.txt").unlink(missing_ok=True)
            removed.append(path)
    return removed


def protocol_id(protocol: Mapping[str, Any]) -> str:
    """A record protocol's short name: the first 8 hex digits of its canonical JSON's sha256
    (runs are comparable only under one protocol_id)."""
    return value_sha256(dict(protocol), 8)


def iter_records(out_root: str | Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every record under <out>/records, in path order; unreadable files are errors."""
    base = Path(out_root) / RECORDS_DIR
    for path in sorted(base.rglob("*.json")):
        try:
            rec = read_json(path)
        except (OSError, ValueError) as e:
            raise BenchError(f"{path}: unreadable result record ({e})") from None
        if not isinstance(rec, dict) or rec.get("schema_version") != SCHEMA_VERSION:
            raise BenchError(f"{path}: field 'schema_version': expected {SCHEMA_VERSION}")
        yield path, rec
