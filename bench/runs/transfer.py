"""The task-adapter contract and registry: how a ticket is plugged into a task.

Each adapter under tasks/<task>/ registers one `TransferTask` subclass with
`@TASKS.register("name")`; its options module (entry point group `ticketbench.tasks`) names
the adapter module, which `load_adapters` imports. bench/ never knows a task's internals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.runs.pretrained import SCRATCH, Init
from bench.ticket.schema import Ticket
from bench.util.registry import Registry

_FROM_CELL = ("metric", "higher_is_better")  # what a task that runs a Cell reads from it


@dataclass(frozen=True)
class TransferRun:
    """One (ticket, task, dataset, seed) cell to run; options are task specific."""

    ticket: Ticket
    dataset: str
    seed: int
    out_root: Path
    data_root: Path | None = None
    device: str = "auto"  # bench.engine.device.select_device's names
    epochs: int | None = None
    iters: int | None = None
    init: Init = SCRATCH  # this arm's starting weights (bench.runs.pretrained)
    mode: str = "new"  # new: skip finished, resume unfinished; cover: rerun
    options: dict[str, Any] = field(default_factory=dict)


class TransferTask(ABC):
    """A task adapter: its datasets, its metric and direction, and how to run a cell.

    A task whose `run` runs a Cell (bench.runs.cell) names it in `cell`, and the cell's
    `metric` and `higher_is_better` are the task's (declared once; a second declaration on
    the task is refused). A task that writes its records another way declares them here.
    """

    name: ClassVar[str]
    datasets: ClassVar[tuple[str, ...]]
    cell: ClassVar[type | None] = None  # a bench.runs.cell.Cell subclass (cell imports this)
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    # Which of --epochs / --iters the task counts its training in ("both": it maps one
    # onto the other). `--task all` hands each task only the flag it counts in.
    budget_unit: ClassVar[str] = "both"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.cell is None:
            return
        for name in _FROM_CELL:
            if name in vars(cls):
                raise TypeError(f"{cls.__name__}.{name}: its cell {cls.cell.__name__} says it")
            setattr(cls, name, getattr(cls.cell, name))

    @abstractmethod
    def missing(self, dataset: str, data_root: Path | None) -> str | None:
        """None when the dataset is usable, else one line saying what is expected where."""

    def write_sample(self, data_root: Path) -> None:  # noqa: B027  (optional hook)
        """Lay the task's bundled sample data under `data_root` (if it has one; once)."""

    @abstractmethod
    def run(self, run: TransferRun) -> dict[str, Any]:
        """Train and score one cell; write and return its result record (bench.runs.records).

        Raise BenchError for bad input; the caller turns any failure into a failed record.
        """


TASKS: Registry[type[TransferTask]] = Registry("task")


def load_adapters() -> None:
    """Register every installed task's adapter (entry points `ticketbench.tasks`; bench/
    never imports tasks/ itself)."""
    import importlib

    from bench.runs.task_options import task_names, task_options

    for name in task_names():
        importlib.import_module(task_options(name).adapter)
