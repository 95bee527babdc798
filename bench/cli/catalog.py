"""What exists, by name, for the CLI's choices and checks, without importing torch.

Most names are read from their registries, which are light: backbones and sharing modes
(bench.models.backbones), SAMs (bench.models.sams; a factory imports its module when
called), run modes (bench.engine.runfiles), tasks and their datasets (the tasks' light
options modules). Three are copies, because their registries live with what they register
and that imports torch or mmseg: STRATEGIES (bench.search.strategies.STRATEGIES),
CLASSIFICATION_DATASETS (bench.data.datasets.DATASETS) and DECODERS
(tasks.segmentation.configs.DECODERS, a task's: bench/ may not import it). `bench --help`
and argument errors must not wait for those; tests/test_catalog.py holds each copy equal
to its registry, and a loaded decoder registry is used instead of its copy.
"""

from __future__ import annotations

import sys

from bench.engine.runfiles import MODES  # noqa: F401  (re-exported: the CLI's choices)
from bench.models.backbones import BACKBONES
from bench.models.backbones import SHARING_MODES as SHARING  # noqa: F401  (re-exported)
from bench.models.names import split_model
from bench.models.sams import SAMS
from bench.report import FORMATS  # noqa: F401  (re-exported: the CLI's choices)

STRATEGIES = ("reinforce", "random", "greedy", "evolution")
# The core classification datasets (bench.data.datasets.DATASETS): train and search.
CLASSIFICATION_DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagenet")
DECODERS = ("fcn", "pspnet", "deeplabv3", "deeplabv3plus", "upernet")


def sam_names() -> tuple[str, ...]:
    """Every registered SAM, plugins' included (sorted)."""
    return tuple(SAMS)


def backbone_names() -> tuple[str, ...]:
    return tuple(BACKBONES)


def decoder_names() -> tuple[str, ...]:
    """The decoder registry's names once its module is loaded, else the copy (sorted)."""
    live = getattr(sys.modules.get("tasks.segmentation.configs"), "DECODERS", None)
    return tuple(sorted(DECODERS if live is None else live))


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
