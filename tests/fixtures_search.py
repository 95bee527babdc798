"""Search test data: a small real Fashion-MNIST and one tiny supernet trained on it.

The images are real Fashion-MNIST pictures (Debian's files when installed, else foolbox's,
see fixtures.write_fashion_mnist_idx). `TINY` shrinks the short preset to test scale;
every test that searches passes it, so they all find the one supernet trained per session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import write_fashion_mnist_idx

from bench.data.datasets import load_splits
from bench.models.resnet import ModelConfig
from bench.search.hparams import resolve_preset
from bench.search.loop import one_thread
from bench.search.supernet import train_supernet

DATASET, MODEL = "fashion-mnist", "resnet20-se"
TINY = {
    "image_size": 16,
    "supernet_overrides": {"epochs": 1, "batch_size": 32},
    "sampler_overrides": {"train_size": 0},
    "search_overrides": {"eval_subset": 0, "eval_batch_size": 64},
    "progress": False,
    "log": lambda _msg: None,
}


@pytest.fixture(name="one_thread")
def one_thread_fixture() -> Iterator[None]:
    """One intra-op thread for the test: these networks are tiny (16 px), where a second
    thread only adds barrier waits (10-100x slower on a CPU shared with other jobs)."""
    with one_thread():
        yield


def write_search_fmnist(root: Path) -> Path:
    """400 training images (40 per class; 40 become the held-out split) and 20 test images."""
    return write_fashion_mnist_idx(root, train_per_class=40, test_per_class=2)


def train_tiny_supernet(out_root: Path, data_root: Path) -> Path:
    """The supernet run_search(DATASET, MODEL, **TINY) trains, trained into out_root."""
    preset = resolve_preset(
        "short",
        DATASET,
        supernet=TINY["supernet_overrides"],
        sampler=TINY["sampler_overrides"],
        search=TINY["search_overrides"],
    )
    splits = load_splits(DATASET, data_root, image_size=TINY["image_size"])
    with one_thread():  # see one_thread_fixture
        run = train_supernet(
            ModelConfig("resnet20", "se"),
            splits.train,
            splits.info,
            splits.num_classes,
            preset.supernet,
            preset.sampler,
            out_root,
            "cpu",
            log=TINY["log"],
            progress=False,
        )
    assert run is not None
    return out_root
