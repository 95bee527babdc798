"""What exists, by name, without importing what implements it (the CLI's choices and checks).

The registries that hold the real things (bench.models.resnet.BACKBONES, bench.models.sams.SAMS,
bench.search.strategies.STRATEGIES, bench.runs.transfer.TASKS, tasks.segmentation.configs.DECODERS,
bench.data.datasets.DATASETS, bench.engine.rundir.MODES) import torch, timm or
mmseg; `bench --help` and argument errors must not wait for them. tests/test_catalog.py keeps
these names equal to the registries. Once a registry's module is loaded (e.g. a plugin
imported by `bench --import` registered a SAM in it), its live names are used instead.
"""

from __future__ import annotations

import sys

from bench.models.names import split_model
from bench.report import FORMATS  # noqa: F401  (re-exported: the CLI's choices)

BACKBONES = (
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet164",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
)  # fmt: skip
SAMS = ("se", "cbam", "eca", "gc", "srm", "sge", "simam", "gct", "dia")
STRATEGIES = ("reinforce", "random", "greedy", "evolution")
# The core classification datasets (bench.data.datasets.DATASETS): train and search.
CLASSIFICATION_DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagenet")
DECODERS = ("fcn", "pspnet", "deeplabv3", "deeplabv3plus", "upernet")
MODES = ("new", "cover")
SHARING = ("block", "stage")


def _live(module: str, attr: str, static: tuple[str, ...]) -> tuple[str, ...]:
    """The registry's names if its module is already imported, else the static list (sorted
    either way, as registries list them)."""
    mod = sys.modules.get(module)
    registry = getattr(mod, attr, None) if mod is not None else None
    return tuple(sorted(registry if registry is not None else static))


def sam_names() -> tuple[str, ...]:
    return _live("bench.models.sams", "SAMS", SAMS)


def backbone_names() -> tuple[str, ...]:
    return _live("bench.models.resnet", "BACKBONES", BACKBONES)


def decoder_names() -> tuple[str, ...]:
    return _live("tasks.segmentation.configs", "DECODERS", DECODERS)


def check_model(name: str, *, need_sam: bool = True) -> tuple[str, str | None]:
    """`resnet50-se` -> ("resnet50", "se"); ValueError with one line on anything unknown."""
    parts = split_model(name)
    if parts is None:
        raise ValueError(f"{name!r}: expected <backbone>-<sam>, e.g. resnet50-se")
    backbone, sam = parts
    if backbone not in backbone_names():
        known = ", ".join(backbone_names())
        raise ValueError(f"{name!r}: unknown backbone {backbone!r} (known: {known})")
    if sam is None and need_sam:
        raise ValueError(f"{name!r}: name a SAM, e.g. {name}-se (bench list sams)")
    if sam is not None and sam not in sam_names():
        known = ", ".join(sam_names())
        raise ValueError(
            f"{name!r}: unknown SAM {sam!r} (known: {known}; your own: bench --import MODULE)"
        )
    return backbone, sam


def tasks() -> dict[str, tuple[str, ...]]:
    """Every installed task -> its datasets, read from the tasks' light options modules
    (entry points `ticketbench.tasks`): a task of your own package is known here too."""
    from bench.runs.task_options import task_names, task_options

    return {name: task_options(name).datasets for name in task_names()}
