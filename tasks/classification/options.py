"""Classification options of `bench transfer` (`--opt KEY=VALUE`, or --preset, --heldout
and --train-limit), as tasks.classification.task reads them from a TransferRun.

Light on purpose (no torch or data): the CLI reads `OPTIONS` to check them.
"""

from __future__ import annotations

import dataclasses

from bench.cli.args import check_heldout
from bench.engine.hparams import PRESETS, HParams, hparam
from bench.runs.task_options import OptionGroup, TaskOptions
from bench.util.errors import BenchError


@dataclasses.dataclass(frozen=True)
class ClassificationOptions(HParams):
    """How a classification transfer cell trains; None: the dataset's protocol."""

    preset: str | None = hparam(
        None,
        "training preset (bench list presets)",
        shown="the dataset's paper protocol",
        choices=lambda: tuple(PRESETS),
    )
    heldout: str | None = hparam(
        None,
        "held-out split carved from train: a count (5000) or per class (100/class)",
        shown="the protocol's",
    )
    train_limit: int | None = hparam(
        None, "train on the first N of a seeded shuffle of the train split", shown="all"
    )

    def validate(self) -> None:
        if self.heldout is not None:
            try:
                check_heldout(self.heldout)
            except ValueError as e:
                raise BenchError(f"heldout {e}") from None
        if self.train_limit is not None and self.train_limit < 1:
            raise BenchError(f"train_limit {self.train_limit}: expected >= 1")


OPTIONS = TaskOptions(
    "classification",
    (OptionGroup(ClassificationOptions),),
    adapter="tasks.classification.task",
    datasets=("fashion-mnist", "cifar10", "cifar100", "imagenet"),
)
