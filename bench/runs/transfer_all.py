"""`bench transfer --task all`: one ticket through every registered task whose data is here.

Each task's datasets are asked `missing()` first; absent ones are skipped with the task's
own reason. Every run that raises becomes a FAILED result record (with the reason, and the
traceback beside it as <record>.traceback.txt), so a failure is kept, never dropped, and the
loop goes on with the next cell.

A failed record carries what is known without the adapter's help: the task's metric and
direction, and `head` / `eval_split` from class attributes of the same names when the
adapter has them ("unknown" otherwise); its protocol is the requested epochs/iterations.
"""

from __future__ import annotations

import argparse
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.runs.pretrained import SCRATCH, Init
from bench.runs.records import make_record, write_record
from bench.runs.transfer import TASKS, TransferRun, TransferTask
from bench.ticket.schema import Ticket
from bench.util.io import atomic_write_text
from bench.util.registry import Registry

__all__ = ["RunOptions", "Skipped", "report", "summary_table", "transfer_all"]

Skipped = tuple[str, str, str]  # (task, dataset, reason)
REASON_LIMIT = 300


@dataclass(frozen=True)
class RunOptions:
    """What every cell of a `transfer --task all` shares (the CLI's run flags)."""

    out_root: Path
    seeds: tuple[int, ...] = (0,)
    data_root: Path | None = None
    device: str = "auto"  # bench.engine.device.select_device's names
    epochs: int | None = None
    iters: int | None = None
    mode: str = "new"
    # Each arm's starting weights, {(ticket checksum, seed): Init}
    # (bench.runs.pretrained.arm_inits); an arm not in it starts from scratch. `pretrained`
    # names their source dataset.
    inits: dict[tuple[str, int], Init] = field(default_factory=dict)
    pretrained: str | None = None
    # Task options keyed by task name ({"segmentation": {"decoder": "pspnet"}}): each task
    # sees only its own, since adapters refuse keys they do not know.
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunOptions:
        """From the CLI's shared run flags (--out, --seeds, --data-root, --device, ...)."""
        return cls(
            out_root=Path(args.out),
            seeds=tuple(args.seeds),
            data_root=args.data_root,
            device=args.device,
            epochs=args.epochs,
            iters=args.iters,
            mode=getattr(args, "mode", "new"),
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return msg if len(msg) <= REASON_LIMIT else msg[: REASON_LIMIT - 3] + "..."


def _attr(task: TransferTask, name: str) -> str:
    value = getattr(task, name, None)
    return value if isinstance(value, str) and value else "unknown"


def failed_record(
    ticket: Ticket,
    task: TransferTask,
    name: str,
    dataset: str,
    seed: int,
    opts: RunOptions,
    exc: BaseException,
) -> dict[str, Any]:
    """Write the FAILED record of a cell whose run raised `exc`, its traceback beside it."""
    protocol = {k: v for k, v in (("epochs", opts.epochs), ("iters", opts.iters)) if v is not None}
    record = make_record(
        ticket=ticket,
        task=name,
        dataset=dataset,
        eval_split=_attr(task, "eval_split"),
        select_split=None,
        head=_attr(task, "head"),
        metric=task.metric,
        value=None,
        higher_is_better=task.higher_is_better,
        seed=seed,
        run_dir="",
        protocol=protocol,
        status="failed",
        reason=_one_line(exc),
    )
    path = write_record(opts.out_root, record)
    tb = "".join(traceback.format_exception(exc))
    atomic_write_text(path.with_suffix(".traceback.txt"), tb)
    return record


def transfer_all(
    ticket: Ticket,
    run_opts: RunOptions,
    tasks: Registry[type[TransferTask]] = TASKS,
    *,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """Run `ticket` on every (task, dataset, seed) whose data is present.

    Returns the records (finished and failed, in run order) and the skipped
    (task, dataset, reason) cells. A run that raises is written as a failed record; only
    KeyboardInterrupt and the like stop the loop.
    """
    say = progress or (lambda _msg: None)
    records: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for name in tasks:
        task = tasks.get(name)()
        for dataset in task.datasets:
            try:
                reason = task.missing(dataset, run_opts.data_root)
            except Exception as e:  # a broken data check is a reason to skip, not to stop
                reason = f"data check failed: {_one_line(e)}"
            if not reason and dataset == run_opts.pretrained:
                reason = "the pretraining dataset itself: its `bench train` records are the result"
            if reason:
                skipped.append((name, dataset, reason))
                say(f"skip {name}/{dataset}: {reason}")
                continue
            # Each task gets the budget flag it counts in; one that takes either gets
            # --epochs when both are given.
            unit = task.budget_unit
            epochs = run_opts.epochs if unit != "iters" else None
            takes_iters = unit == "iters" or (unit == "both" and epochs is None)
            iters = run_opts.iters if takes_iters else None
            for seed in run_opts.seeds:
                say(f"run  {name}/{dataset} seed {seed}")
                run = TransferRun(
                    ticket=ticket,
                    dataset=dataset,
                    seed=seed,
                    out_root=run_opts.out_root,
                    data_root=run_opts.data_root,
                    device=run_opts.device,
                    epochs=epochs,
                    iters=iters,
                    init=run_opts.inits.get((ticket.checksum, seed), SCRATCH),
                    mode=run_opts.mode,
                    options=dict(run_opts.options.get(name, {})),
                )
                try:
                    record = task.run(run)
                except Exception as e:
                    record = failed_record(ticket, task, name, dataset, seed, run_opts, e)
                    say(f"FAILED {name}/{dataset} seed {seed}: {record['provenance']['reason']}")
                records.append(record)
    return records, skipped


def _format_value(record: dict[str, Any]) -> str:
    prov, result = record["provenance"], record["result"]
    if prov["status"] != "finished":
        return f"FAILED: {prov['reason']}"
    return f"{result['value']:.4g}"


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]).rstrip() for r in rows]


def summary_table(records: Iterable[dict[str, Any]], skipped: Iterable[Skipped]) -> str:
    """Plain-text table of what ran (value or failure reason) and what was skipped, and why."""
    rows = [["task", "dataset", "head", "seed", "metric", "value"]]
    for r in records:
        s, res = r["setting"], r["result"]
        arrow = "higher" if res["higher_is_better"] else "lower"
        rows.append(
            [
                s["task"],
                s["dataset"],
                s["head"],
                str(r["provenance"]["seed"]),
                f"{res['metric']} ({arrow} is better)",
                _format_value(r),
            ]
        )
    lines = _aligned(rows) if len(rows) > 1 else ["no runs: no task had its data"]
    skipped = list(skipped)
    if skipped:
        lines += ["", "skipped (data not found):"]
        lines += [f"  {task}/{dataset}: {reason}" for task, dataset, reason in skipped]
    return "\n".join(lines) + "\n"


def report(
    records: Sequence[dict[str, Any]],
    skipped: Sequence[Skipped],
    out_root: str | Path,
    *,
    fmt: str = "md",
    plot: bool = False,
) -> tuple[str, list[Path]]:
    """The runs table, then the leaderboard of the tasks that ran (with plots when asked)."""
    from bench.report.leaderboard import leaderboard

    text = summary_table(records, skipped)
    ran = sorted({r["setting"]["task"] for r in records})
    if not ran:
        return text, []
    board, paths = leaderboard(out_root, fmt=fmt, task=ran, plot=plot)
    return f"{text}\n{board}", paths
