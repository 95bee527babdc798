"""Batch augmentation of the in-memory datasets: bit-identical to torchvision per image.

The reference applies the protocol's torchvision Compose to each PIL image the reader
returns, drawing from the global torch RNG exactly as the per-sample loader did: in batch
order without workers, after seeding with `sample_seed(key, index)` with workers. The code
under test is the engine's own training DataLoader (`training_data`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision import transforms as T

from bench.data import transforms as tfm
from bench.data.batch_augment import BatchPlan
from bench.data.datasets import DEBIAN_FASHION_MNIST, SplitView, load_splits
from bench.engine.distributed import DistInfo
from bench.engine.hparams import TrainHParams
from bench.engine.loop import training_data

BATCH = 16


def _small(view: SplitView, n: int) -> SplitView:
    """The first n images of a view, same reader, transform and pixels."""
    return SplitView(view.base, view.indices[:n], view.transform, view.pixels)


def _reference(view: SplitView, batch: list[Any], seeded: bool) -> torch.Tensor:
    """torchvision per image, in batch order (seeded: after torch.manual_seed(seed))."""
    images = []
    for item in batch:
        seed, i = item if seeded else (None, item)
        if seed is not None:
            torch.manual_seed(seed)
        images.append(view.transform(view.base[int(view.indices[i])][0]))
    return torch.stack(images)


def _assert_same(view: SplitView, workers: int, start: int) -> None:
    """The engine's loader over one epoch from batch `start` equals the reference."""
    hp = TrainHParams(batch_size=BATCH, num_workers=workers, seed=3)
    data = training_data(view, hp, DistInfo(0, 1, 0), cuda=False)
    data["sampler"].set_epoch(1)
    data["batches"].key, data["batches"].start = 12345, start
    data["loader_gen"].manual_seed(9)
    torch.manual_seed(7)
    got = list(data["loader"])
    after = torch.get_rng_state()
    torch.manual_seed(7)
    batches = list(data["batches"])
    want = [_reference(view, b, workers > 0) for b in batches]
    if workers == 0:  # the global RNG moves as per image (what a checkpoint saves)
        assert torch.equal(after, torch.get_rng_state())
    assert len(got) == len(want) == len(data["batches"]) - start > 0
    for (x, y), ref, batch in zip(got, want, batches, strict=True):
        assert x.dtype == ref.dtype and x.is_contiguous()
        assert torch.equal(x, ref)
        indices = [item[1] if workers else item for item in batch]
        assert y.tolist() == view.targets[indices].tolist()


@pytest.fixture(scope="module")
def fashion_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def fashion(fashion_cache: Path) -> Any:
    return load_splits("fashion-mnist", DEBIAN_FASHION_MNIST, cache_dir=fashion_cache)


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("start", [0, 2])
def test_fashion_mnist_train_batches(fashion: Any, workers: int, start: int) -> None:
    assert fashion.train.plan is not None and not fashion.train.plan.per_image
    _assert_same(_small(fashion.train, 5 * BATCH + 3), workers, start)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("workers", [0, 1])
def test_cifar_train_batches(name: str, workers: int,
                             request: pytest.FixtureRequest) -> None:  # fmt: skip
    splits = load_splits(name, request.getfixturevalue(f"{name}_root"))
    assert splits.train.plan is not None and splits.train.pixels is not None
    _assert_same(splits.train, workers, start=1)


def test_eval_batches_are_torchvisions(fashion: Any, cifar10_root: Path) -> None:
    cifar = load_splits("cifar10", cifar10_root)
    for view in (_small(fashion.test, 40), cifar.test, cifar.heldout):
        assert view.plan is not None and view.plan.crop is None and view.plan.flip is None
        loader = torch.utils.data.DataLoader(view, batch_size=BATCH)
        got = torch.cat([x for x, _ in loader])
        ref = torch.stack([view.transform(view.base[int(i)][0]) for i in view.indices])
        assert got.is_contiguous() and torch.equal(got, ref)


def test_resized_protocol_keeps_resize_per_image(fashion_cache: Path) -> None:
    """A resize (tests' tiny images) runs per image on PIL, the random steps on the batch."""
    small = load_splits("fashion-mnist", DEBIAN_FASHION_MNIST, image_size=16,
                        cache_dir=fashion_cache)  # fmt: skip
    plan = small.train.plan
    assert plan is not None and [type(t) for t in plan.per_image] == [T.Pad, T.Resize]
    _assert_same(_small(small.train, 3 * BATCH), 0, start=1)


def test_imagenet_and_unknown_steps_stay_per_image(imagenet_root: Path) -> None:
    train, evaluate, _ = tfm.imagenet_transforms(32)
    assert BatchPlan.of(train) is None  # RandomResizedCrop: no batch form
    assert BatchPlan.of(T.Compose([T.RandomCrop(8, padding=2, padding_mode="reflect"),
                                   T.ToTensor()])) is None  # fmt: skip
    assert BatchPlan.of(T.Compose([T.ColorJitter(0.1), T.ToTensor()])) is None
    splits = load_splits("imagenet", imagenet_root, heldout="1/class", image_size=32)
    assert splits.train.plan is None and splits.test.plan is None and splits.train.pixels is None
    assert BatchPlan.of(evaluate) is not None  # batchable, yet ImageNet has no pixels
