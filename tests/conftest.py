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
