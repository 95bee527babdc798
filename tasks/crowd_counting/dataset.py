"""Torch views of a ShanghaiTech split: training crops and whole evaluation images.

Each item pairs an image with its cached full-resolution density map (tasks.crowd_counting
.cache). Random crops and flips are applied to the image and the map together, and only
then is the map sum-pooled to the network's output stride, so image and target always
describe the same heads and the pooled map holds exactly the crop's mass. Randomness comes
from torch's RNG, which the engine seeds and checkpoints (exact resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from bench.util.errors import BenchError
from tasks.crowd_counting.cache import read_density
from tasks.crowd_counting.data import read_image
from tasks.crowd_counting.density import sum_pool

# torchvision's ImageNet statistics, as the classification task (and so a --init-from
# checkpoint) uses them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Item:
    """An image, its cached density map and its annotated head count."""

    image: Path
    density: Path
    count: int
    shape: tuple[int, int]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> normalized 3 x H x W float32."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


def crop_box(
    shape: tuple[int, int], crop: tuple[int, int], generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """A uniformly random (y0, y1, x0, x1) window of size `crop` inside `shape` (clamped)."""
    h, w = shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    y0 = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
    x0 = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
    return y0, y0 + ch, x0, x0 + cw


def augment(
    image: np.ndarray,
    density: np.ndarray,
    crop: tuple[int, int],
    flip: bool,
    stride: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random crop (zero-padded up to `crop` if the image is smaller) and, with
    probability 1/2 if `flip`, a horizontal flip, of image and map alike; the map is then
    sum-pooled by `stride`. Returns (3 x ch x cw image, 1 x ch/stride x cw/stride map)."""
    if crop[0] % stride or crop[1] % stride:
        raise BenchError(f"crop {crop[0]}x{crop[1]}: expected multiples of the stride {stride}")
    y0, y1, x0, x1 = crop_box(image.shape[:2], crop, generator)
    img = to_tensor(image[y0:y1, x0:x1])
    den = torch.from_numpy(np.ascontiguousarray(density[y0:y1, x0:x1], dtype=np.float32))[None]
    return _finish(img, den, crop, flip, stride, generator)


def _finish(
    img: torch.Tensor,
    den: torch.Tensor,
    crop: tuple[int, int],
    flip: bool,
    stride: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a cropped pair up to `crop`, maybe flip both, then sum-pool the map."""
    ph, pw = crop[0] - img.shape[1], crop[1] - img.shape[2]
    if ph or pw:  # zeros: the mean colour after normalization, and no heads
        img = F.pad(img, (0, pw, 0, ph))
        den = F.pad(den, (0, pw, 0, ph))
    if flip and bool(torch.rand((), generator=generator) < 0.5):
        img, den = img.flip(-1), den.flip(-1)
    return img, sum_pool(den, stride)


class TrainCrops(Dataset):
    """`crops_per_image` random crops per image and epoch (index i uses image i % n).

    crop: (h, w) in pixels, or None for CSRNet's patches of half the image's height and
    width (rounded down to the stride; variable size, so batch size 1).
    """

    def __init__(
        self,
        items: list[Item],
        *,
        stride: int,
        crop: tuple[int, int] | None,
        crops_per_image: int = 1,
        flip: bool = True,
    ) -> None:
        if not items:
            raise BenchError("no training images")
        self.items, self.stride, self.crop = items, stride, crop
        self.crops_per_image, self.flip = crops_per_image, flip

    def __len__(self) -> int:
        return len(self.items) * self.crops_per_image

    def crop_for(self, item: Item) -> tuple[int, int]:
        if self.crop is not None:
            return self.crop
        s = self.stride
        return (max(s, item.shape[0] // 2 // s * s), max(s, item.shape[1] // 2 // s * s))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[i % len(self.items)]
        crop = self.crop_for(item)
        # Draw the window first and read only that window of the map from HDF5.
        y0, y1, x0, x1 = crop_box(item.shape, crop)
        image = read_image(item.image)
        if image.shape[:2] != item.shape:
            raise BenchError(f"{item.image}: size changed since its density map was made")
        img = to_tensor(image[y0:y1, x0:x1])
        den = torch.from_numpy(read_density(item.density, (y0, y1, x0, x1)))[None]
        return _finish(img, den, crop, self.flip, self.stride, None)


class WholeImages(Dataset):
    """Whole images for evaluation: (image, map pooled by `stride`, annotated count)."""

    def __init__(self, items: list[Item], *, stride: int) -> None:
        self.items, self.stride = items, stride

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        item = self.items[i]
        img = to_tensor(read_image(item.image))
        den = torch.from_numpy(read_density(item.density))[None]
        return img, sum_pool(den, self.stride), torch.tensor(float(item.count), dtype=torch.float64)
