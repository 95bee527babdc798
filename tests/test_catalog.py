"""bench.cli.catalog names what exists without importing torch: it reads the light
registries themselves (a SAM or backbone registered at run time is known at once), and the
three copies it must keep (their registries import torch or mmseg) equal the registries."""

import subprocess
import sys

import pytest

from bench.cli import catalog
from bench.data.datasets import DATASETS
from bench.runs.task_options import task_names
from bench.runs.transfer import TASKS, load_adapters
from bench.search.strategies import STRATEGIES
from tasks.segmentation.configs import DECODERS


def test_the_copies_equal_their_registries() -> None:
    load_adapters()
    assert set(catalog.STRATEGIES) == set(STRATEGIES)
    assert set(catalog.DECODERS) == set(DECODERS) and len(catalog.DECODERS) == 5
    assert set(catalog.CLASSIFICATION_DATASETS) == set(DATASETS)
    assert {t: TASKS.get(t).datasets for t in TASKS} == catalog.tasks()
    assert set(task_names()) == set(TASKS)


# A fresh interpreter: nothing heavy imported before, and the registries left as found.
RUN_TIME_NAMES = """
import sys
from bench.cli import catalog
from bench.models.backbones import BACKBONES, BackboneSpec
from bench.models.sams import SAMS

before = (len(catalog.sam_names()), len(catalog.backbone_names()))
BACKBONES.register("tinyback")(BackboneSpec("basic", (1, 1, 1), (4, 8, 16), "cifar", 32, 10))
SAMS.register("mysam")(lambda channels: None)
print(*before, *catalog.check_model("tinyback-mysam"), *catalog.MODES, *catalog.SHARING)
print("torch" in sys.modules)
"""


def test_names_are_read_from_the_registries_without_torch() -> None:
    cmd = [sys.executable, "-c", RUN_TIME_NAMES]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    # 9 SAMs and 11 backbones ship; ones registered at run time are known at once.
    assert out == ["9", "11", "tinyback", "mysam", "new", "cover", "block", "stage", "False"]


def test_live_decoders_win_once_loaded_and_bad_names_are_told() -> None:
    # The decoder registry's module is imported above, so its live names are what is checked.
    assert catalog.decoder_names() == tuple(DECODERS)
    assert catalog.check_model("resnet164-se") == ("resnet164", "se")
    bad_names = {
        "resnet21-se": "unknown backbone",
        "resnet20-xx": "unknown SAM",
        "resnet20": "name a SAM",
        "ResNet20": "expected <backbone>",
    }
    for bad, words in bad_names.items():
        with pytest.raises(ValueError, match=words):
            catalog.check_model(bad)
