"""bench.cli.catalog names what the registries hold, so the CLI can offer and check names
without importing torch: here the light copy is held equal to the registries themselves."""

import pytest

from bench.cli import catalog
from bench.data.datasets import DATASETS
from bench.engine.rundir import MODES
from bench.models.resnet import BACKBONES, SHARING_MODES
from bench.models.sams import SAMS
from bench.runs.task_options import task_names
from bench.runs.transfer import TASKS, load_adapters
from bench.search.strategies import STRATEGIES
from tasks.segmentation.configs import DECODERS


def test_catalog_names_what_the_registries_hold() -> None:
    load_adapters()
    assert set(catalog.BACKBONES) == set(BACKBONES)
    assert set(catalog.SAMS) == set(SAMS)
    assert set(catalog.STRATEGIES) == set(STRATEGIES)
    assert set(catalog.DECODERS) == set(DECODERS) and len(catalog.DECODERS) == 5
    assert catalog.MODES == tuple(MODES) and catalog.SHARING == tuple(SHARING_MODES)
    assert {t: TASKS.get(t).datasets for t in TASKS} == catalog.tasks()
    assert set(catalog.CLASSIFICATION_DATASETS) == set(DATASETS)
    assert set(task_names()) == set(TASKS)


def test_live_registries_win_once_loaded() -> None:
    # The registry modules are imported above, so the live names are what the CLI checks.
    assert catalog.sam_names() == tuple(SAMS) and catalog.decoder_names() == tuple(DECODERS)
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
