"""The standard train / eval transforms of each classification protocol.

Each builder returns (train, eval, input_size) where input_size is the (C, H, W) tensor the
backbone receives. `image_size` overrides the protocol's side length (tests use tiny images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torchvision import transforms as T

Transform = Callable[[Any], Any]
InputSize = tuple[int, int, int]

# Per-channel statistics of the CIFAR training sets (pixel values in [0, 1]). The
# pytorch-classification code that DIANet / ASR build on normalizes both CIFARs with
# (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010); those stds are not the training set's,
# and the difference does not move accuracy, so we use each dataset's own statistics.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

# torchvision's / the official EAN code's ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Fashion-MNIST images are padded 28 -> 32 with zeros before normalizing, so the statistics
# are those of the padded training set (computed from the 60,000 Debian training images;
# the often-quoted 0.2860 / 0.3530 are the unpadded 28x28 values).
FASHION_MNIST_MEAN = 0.2190
FASHION_MNIST_STD = 0.3318

CIFAR_SIZE = 32
IMAGENET_SIZE = 224


class GreyToRGB:
    """A (1, H, W) image or (N, 1, H, W) batch seen as 3 channels (a view; collating copies it)."""

    def __call__(self, x: Any) -> Any:
        return x.expand(*x.shape[:-3], 3, -1, -1)

    def __repr__(self) -> str:
        return "GreyToRGB()"


def _check_size(image_size: int) -> int:
    if image_size < 8:
        # Even the tiniest test image must survive the crops and a ResNet's stem.
        raise ValueError(f"image_size must be at least 8, got {image_size}")
    return image_size


def cifar_transforms(
    mean: Sequence[float], std: Sequence[float], image_size: int | None = None
) -> tuple[Transform, Transform, InputSize]:
    """CIFAR protocol: RandomCrop(32, padding=4) + horizontal flip; eval is the plain image."""
    size = _check_size(image_size or CIFAR_SIZE)
    # Keep the protocol's padding / size ratio (4 px at 32) when the size is overridden.
    resize = [T.Resize(size)] if size != CIFAR_SIZE else []
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    train = T.Compose(
        [
            *resize,
            T.RandomCrop(size, padding=max(1, size // 8)),
            T.RandomHorizontalFlip(),
            *normalize,
        ]
    )
    return train, T.Compose([*resize, *normalize]), (3, size, size)


def imagenet_transforms(image_size: int | None = None) -> tuple[Transform, Transform, InputSize]:
    """ImageNet protocol: RandomResizedCrop 224 + flip; eval Resize 256 + CenterCrop 224."""
    size = _check_size(image_size or IMAGENET_SIZE)
    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *normalize])
    # The 256/224 resize ratio of the standard protocol, kept for other sizes.
    evaluate = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), *normalize])
    return train, evaluate, (3, size, size)


def fashion_mnist_transforms(
    image_size: int | None = None,
) -> tuple[Transform, Transform, InputSize]:
    """Fashion-MNIST for the CIFAR ResNets: pad 28 -> 32, grey -> 3 channels, light augmentation.

    Augmentation is a 2-px random shift and a horizontal flip (clothes are left/right
    symmetric enough); no colour or scale jitter on 28-px greyscale images.
    """
    size = _check_size(image_size or CIFAR_SIZE)
    resize = [T.Resize(size)] if size != CIFAR_SIZE else []
    # Normalize the one grey channel, then view it as three: the same tensor as
    # Grayscale(3) + ToTensor + a 3-channel Normalize, at a third of the work.
    to_backbone = [
        T.ToTensor(),
        T.Normalize((FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,)),
        GreyToRGB(),
    ]
    pad = T.Pad(2, fill=0)
    train = T.Compose(
        [
            pad,
            *resize,
            T.RandomCrop(size, padding=max(1, size // 16)),
            T.RandomHorizontalFlip(),
            *to_backbone,
        ]
    )
    return train, T.Compose([pad, *resize, *to_backbone]), (3, size, size)
