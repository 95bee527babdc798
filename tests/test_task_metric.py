"""A task's metric and direction are declared once, on the Cell that scores it: the task
adapter reads them from there, a second declaration is refused, and none hides elsewhere."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import ClassVar

import pytest

from bench.runs.transfer import TASKS, TransferTask, load_adapters

ROOT = Path(__file__).resolve().parents[1]
DECLARED = ("metric", "higher_is_better")


def _declaring_classes() -> set[str]:
    """Every class under bench/ and tasks/ whose body assigns a metric or a direction."""
    found = set()
    for path in [*(ROOT / "bench").rglob("*.py"), *(ROOT / "tasks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            for stmt in node.body:
                if isinstance(stmt, ast.Assign):
                    targets = stmt.targets
                elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                    targets = [stmt.target]  # an annotation alone declares nothing
                else:
                    continue
                if any(isinstance(t, ast.Name) and t.id in DECLARED for t in targets):
                    found.add(node.name)
    return found


def test_each_task_reads_its_metric_and_direction_from_its_cell() -> None:
    load_adapters()
    cells = {}
    for name in TASKS:
        task = TASKS.get(name)
        assert task.cell is not None and task.cell.task == name, name
        assert (task.metric, task.higher_is_better) == (task.cell.metric,
                                                        task.cell.higher_is_better)  # fmt: skip
        cells[name] = task.cell.__name__
    assert {n: TASKS.get(n).metric for n in TASKS} == {
        "classification": "top1", "crowd_counting": "mae", "segmentation": "mIoU"
    }  # fmt: skip
    # The cells are the only declarations in the code (the abstract Cell annotates, only).
    assert _declaring_classes() == set(cells.values())


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
