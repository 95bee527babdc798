"""Classification options of `bench transfer` (`--opt KEY=VALUE`, or --preset, --heldout
and --train-limit), as tasks.classification.task reads them from a TransferRun.

Light on purpose (no torch or data): the CLI reads `OPTIONS` to check them.
"""

from __future__ import annotations

import dataclasses

from bench.cli.args import check_heldout
from bench.engine.hparams import PRESETS, HParams, hparam
from bench.runs.task_options import OptionGroup, TaskOptions, WorkQuery
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


def work(q: WorkQuery) -> int | None:
    """Images one arm trains on: the preset's epochs (or --epochs) x the train split minus
    the held-out split, cut to train_limit (the official split sizes)."""
    from bench.engine.hparams import preset_for
    from bench.study.work import train_images

    o = ClassificationOptions.from_dict(dict(q.options))
    images = train_images(q.dataset, o.heldout, o.train_limit)
    epochs = q.epochs or PRESETS.get(preset_for(o.preset or "auto", q.dataset)).epochs
    return None if images is None else epochs * images


OPTIONS = TaskOptions(
    "classification",
    (OptionGroup(ClassificationOptions),),
    adapter="tasks.classification.task",
    datasets=("fashion-mnist", "cifar10", "cifar100", "imagenet"),
    work=work,
)
