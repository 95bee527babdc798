"""What exists, by name, without importing what implements it (the CLI's choices and checks).

The registries that hold the real things (bench.models.resnet.BACKBONES, bench.models.sams.SAMS,
bench.search.strategies.STRATEGIES, bench.transfer.TASKS, tasks.segmentation.configs.DECODERS,
tasks.classification.datasets.DATASETS, bench.engine.rundir.MODES) import torch, timm or
mmseg; `bench --help` and argument errors must not wait for them. tests/test_catalog.py keeps
these names equal to the registries. Once a registry's module is loaded (e.g. a plugin
imported by `bench --import` registered a SAM in it), its live names are used instead.
"""

from __future__ import annotations

import re
import sys

BACKBONES = (
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet164",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
)  # fmt: skip
SAMS = ("se", "cbam", "eca", "gc", "srm", "sge", "simam", "gct", "dia")
STRATEGIES = ("reinforce", "random", "greedy", "evolution")
# Task -> its datasets, in the adapters' order (bench.transfer.TASKS).
TASKS: dict[str, tuple[str, ...]] = {
    "classification": ("fashion-mnist", "cifar10", "cifar100", "imagenet"),
    "crowd_counting": ("shanghaitech-a", "shanghaitech-b"),
    "segmentation": ("cityscapes",),
}
CLASSIFICATION_DATASETS = TASKS["classification"]
DECODERS = ("fcn", "pspnet", "deeplabv3", "deeplabv3plus", "upernet")
MODES = ("new", "cover")
FORMATS = ("csv", "md", "latex")  # leaderboard table formats (bench.report.export)
SHARING = ("block", "stage")
# The light module that declares each task's --opt keys (a TaskOptions named OPTIONS).
TASK_OPTIONS = {
    "classification": "tasks.classification.options",
    "crowd_counting": "tasks.crowd_counting.options",
    "segmentation": "tasks.segmentation.options",
}

_MODEL_RE = re.compile(r"(?P<backbone>[a-z0-9]+)(?:-(?P<sam>[a-z0-9_]+))?")


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
    m = _MODEL_RE.fullmatch(name)
    if not m:
        raise ValueError(f"{name!r}: expected <backbone>-<sam>, e.g. resnet50-se")
    backbone, sam = m.group("backbone"), m.group("sam")
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
