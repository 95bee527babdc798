"""Segmentation options: the training recipe (`SegHParams`) and the run-time switches.

Light on purpose (no torch, mmseg or data): `bench transfer --opt KEY=VALUE` and
`bench list options segmentation` read `OPTIONS` from here; tasks.segmentation.configs turns
a SegHParams into an mmengine Runner config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from bench.cli import catalog
from bench.engine.hparams import HParams, hparam
from bench.runs.task_options import OptionGroup, TaskOptions, WorkQuery
from bench.util.errors import BenchError, check_all
from tasks.segmentation import LAYOUTS

DEFAULT_DATA_ROOT = Path("data/cityscapes")  # mmseg's default layout, relative to cwd
# On the bundled sample, a default budget that shows the whole flow in seconds.
SAMPLE_ITERS = 20
# mmseg schedule_{40k,80k}.py: total iterations and the val/checkpoint interval.
SCHEDULES: dict[str, tuple[int, int]] = {"40k": (40_000, 4_000), "80k": (80_000, 8_000)}


@dataclasses.dataclass(frozen=True)
class SegHParams(HParams):
    """How to train a segmentation transfer run. Defaults: mmseg's Cityscapes 512x1024
    recipe (per-process batch 2 as in "4xb2", SGD lr 0.01, poly 0.9 to 1e-4)."""

    decoder: str = hparam(
        "pspnet",
        "decode head: fcn, pspnet, deeplabv3, deeplabv3plus, upernet",
        choices=catalog.decoder_names,
    )
    schedule: Literal["40k", "80k"] = hparam("40k", "mmseg schedule (iterations, val interval)")
    iters: int = hparam(0, "training iterations (0: the schedule's)")
    val_interval: int = hparam(0, "validate and checkpoint every N iterations (0: schedule's)")
    crop: tuple[int, ...] = hparam((512, 1024), "training crop, height,width")
    image_size: tuple[int, ...] = hparam(
        (1024, 2048), "image size (height,width) before random rescaling and for validation"
    )
    batch_size: int = hparam(2, "images per process per iteration (mmseg's 4xb2: 2)")
    lr: float = hparam(0.01, "SGD learning rate")
    momentum: float = hparam(0.9, "SGD momentum")
    weight_decay: float = hparam(5e-4, "SGD weight decay")
    min_lr: float = hparam(1e-4, "poly schedule's final learning rate")
    aux_head: bool = hparam(True, "auxiliary FCN head (weight 0.4) on the second-last stage")
    deep_stem: bool = hparam(True, "ResNetV1c deep stem (mmseg's R-50-D8); ImageNet backbones")
    contract_dilation: bool = hparam(True, "halve the first dilated block's dilation (mmseg)")
    num_workers: int = hparam(2, "data-loader workers per process")
    seed: int = hparam(0, "seed of init, data order and augmentation")

    def validate(self) -> None:
        if self.decoder not in catalog.decoder_names():
            known = ", ".join(catalog.decoder_names())
            raise BenchError(f"decoder {self.decoder!r}: expected one of {known}")
        checks = [
            (self.iters >= 0, "iters must be >= 0"),
            (self.val_interval >= 0, "val_interval must be >= 0"),
            (len(self.crop) == 2 and min(self.crop) >= 8, "crop must be height,width >= 8"),
            (
                len(self.image_size) == 2 and min(self.image_size) >= 8,
                "image_size must be height,width >= 8",
            ),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0 and self.min_lr >= 0, "lr must be > 0 and min_lr >= 0"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
        ]
        check_all(checks, "segmentation hparams")

    @property
    def max_iters(self) -> int:
        return self.iters or SCHEDULES[self.schedule][0]

    @property
    def interval(self) -> int:
        return min(self.val_interval or SCHEDULES[self.schedule][1], self.max_iters)


SEG_FIELDS = frozenset(f.name for f in dataclasses.fields(SegHParams))


@dataclasses.dataclass(frozen=True)
class SegRuntime(HParams):
    """Switches that change what a run prints or measures, not what it trains (so they are
    kept out of its hash: tasks.segmentation.task.RUNTIME_OPTIONS)."""

    measure_latency: bool = hparam(
        False, "time the segmentor beside its controls", shown="on CUDA only"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = hparam(
        "INFO", "the mmengine Runner's log level"
    )
    with_cp: bool = hparam(
        False, "gradient checkpointing in the backbone: less memory, same outputs and BN stats"
    )


def work(q: WorkQuery) -> int:
    """Images one arm trains on: iterations x per-process batch x processes (--iters, else
    SAMPLE_ITERS on the bundled sample, else the schedule's)."""
    from tasks.segmentation.data import find_root
    from tasks.segmentation.sample import sample_size

    root = find_root(DEFAULT_DATA_ROOT if q.data_root is None else Path(q.data_root))
    sample = q.sample or sample_size(root) is not None
    hp = SegHParams.from_dict({k: v for k, v in q.options.items() if k in SEG_FIELDS})
    iters = q.iters if q.iters is not None else SAMPLE_ITERS if sample else hp.max_iters
    return iters * hp.batch_size * q.processes


OPTIONS = TaskOptions(
    "segmentation",
    # Iterations come from --iters and the seed from --seeds.
    (
        OptionGroup(SegHParams, skip=("iters", "seed"), title="training recipe"),
        OptionGroup(SegRuntime, title="run-time (not part of a run's identity)"),
    ),
    note="on the bundled sample: crop and image_size default to the sample's size, "
    "num_workers to 0; --iters sets the budget",
    adapter="tasks.segmentation.task",
    datasets=tuple(LAYOUTS),
    layouts=LAYOUTS,
    recipes=lambda _pattern: [
        (n, f"{it:,} iterations, validate every {v:,}") for n, (it, v) in SCHEDULES.items()
    ],
    recipes_title="segmentation schedules (bench transfer --opt schedule=NAME)",
    work=work,
)
