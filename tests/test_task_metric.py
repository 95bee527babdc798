"""A task's metric and direction are declared once, on the Cell that scores it: the task
adapter reads them from there, a second declaration on it is refused, and every cell of a
task agrees with it."""

from __future__ import annotations

from typing import ClassVar

import pytest

from bench.runs.cell import Cell
from bench.runs.classify import ClassificationCell
from bench.runs.transfer import TASKS, TransferTask, load_adapters


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def test_each_task_reads_its_metric_and_direction_from_its_cell() -> None:
    load_adapters()
    for name in TASKS:
        task = TASKS.get(name)
        assert task.cell is not None and task.cell.task == name, name
        assert (task.metric, task.higher_is_better) == (task.cell.metric,
                                                        task.cell.higher_is_better)  # fmt: skip
    assert {n: (TASKS.get(n).metric, TASKS.get(n).higher_is_better) for n in TASKS} == {
        "classification": ("top1", True), "crowd_counting": ("mae", False),
        "segmentation": ("mIoU", True),
    }  # fmt: skip
    assert TASKS.get("classification").cell is ClassificationCell  # bench train's cell too


def test_every_cell_of_a_task_agrees_with_it() -> None:
    load_adapters()
    said: dict[str, set[tuple[str, bool]]] = {}
    for cell in _subclasses(Cell):
        if hasattr(cell, "metric") and hasattr(cell, "task"):
            said.setdefault(cell.task, set()).add((cell.metric, cell.higher_is_better))
    assert said.keys() >= set(TASKS)
    for name in TASKS:
        assert said[name] == {(TASKS.get(name).metric, TASKS.get(name).higher_is_better)}


def test_a_second_declaration_on_the_task_is_refused() -> None:
    load_adapters()
    crowd = TASKS.get("crowd_counting")
    with pytest.raises(TypeError, match="higher_is_better: its cell CrowdCell says it"):

        class _Again(crowd):  # type: ignore[misc, valid-type]
            higher_is_better: ClassVar[bool] = True

    class _Same(crowd):  # type: ignore[misc, valid-type]
        pass

    assert (_Same.metric, _Same.higher_is_better) == ("mae", False)


def test_a_task_without_a_cell_declares_its_own() -> None:
    class _Own(TransferTask):
        name: ClassVar[str] = "own"
        metric: ClassVar[str] = "acc"
        higher_is_better: ClassVar[bool] = True

        def missing(self, dataset, data_root):
            return None

        def run(self, run):
            return {}

    assert (_Own.metric, _Own.higher_is_better, _Own.cell) == ("acc", True, None)
