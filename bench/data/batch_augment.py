"""A torchvision Compose applied to a whole uint8 batch at once, bit for bit as per image.

Per-image PIL work (pad, crop, flip, ToTensor, Normalize) is most of what a DataLoader costs
on the in-memory datasets (Fashion-MNIST, CIFAR). `BatchPlan.of(compose)` reads the
protocol's own Compose and, when every step has a batch form, runs it on a (N, C, H, W)
uint8 batch: the same tensors as `compose(image)` per image, for the same RNG state, since
each sample draws its random choices from the global torch RNG in the per-image order (the
crop's `get_params`, then the flip) and the arithmetic is the same float32 element-wise ops.

Supported: deterministic per-image steps first (Resize, CenterCrop, Pad: run per image on
PIL), then Pad on the batch, RandomCrop (constant fill; each sample's window a slice) and
RandomHorizontalFlip, ToTensor, then batch-safe tensor steps (Normalize, GreyToRGB).
Anything else: `of` returns None and the caller stays per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchvision import transforms as T
from torchvision.transforms import functional as F

from bench.data.transforms import GreyToRGB

__all__ = ["BatchPlan"]

Reseed = Callable[[int], None]

# Steps that draw nothing: run on each PIL image before the batch is formed.
_PER_IMAGE = (T.Resize, T.CenterCrop, T.Pad)
# Tensor steps whose per-image code is also right on a (N, C, H, W) batch.
_TAIL = (T.Normalize, GreyToRGB)


def _constant(t: T.Pad | T.RandomCrop) -> bool:
    """A zero-drawing constant pad, filled alike on PIL and tensors (an int fill)."""
    return t.padding_mode == "constant" and isinstance(t.fill, int)


@dataclass(frozen=True)
class BatchPlan:
    """A Compose split into per-image steps, batch geometry, ToTensor and a tensor tail."""

    per_image: tuple[Any, ...]
    pads: tuple[T.Pad, ...]
    crop: T.RandomCrop | None
    flip: T.RandomHorizontalFlip | None
    tail: tuple[Any, ...]

    @classmethod
    def of(cls, transform: Any) -> BatchPlan | None:
        """The plan of a Compose, or None when some step has no exact batch form."""
        steps = list(getattr(transform, "transforms", None) or [])
        # Exact types: a subclass may draw or compute differently.
        kinds = [type(t) for t in steps]
        if kinds.count(T.ToTensor) != 1:
            return None
        at = kinds.index(T.ToTensor)
        before, tail = steps[:at], tuple(steps[at + 1 :])
        flip = before.pop() if before and type(before[-1]) is T.RandomHorizontalFlip else None
        crop = before.pop() if before and type(before[-1]) is T.RandomCrop else None
        if crop is not None and (crop.pad_if_needed or not _constant(crop)):
            return None
        pads: list[T.Pad] = []
        while before and type(before[-1]) is T.Pad and _constant(before[-1]):
            pads.insert(0, before.pop())
        if not all(type(t) in _PER_IMAGE for t in before):
            return None
        if not all(type(t) in _TAIL for t in tail):
            return None
        return cls(tuple(before), tuple(pads), crop, flip, tail)

    def images(self, pil_images: Sequence[Any]) -> torch.Tensor:
        """The per-image steps on PIL images, stacked as a (N, C, H, W) uint8 batch."""
        out = []
        for image in pil_images:
            for t in self.per_image:
                image = t(image)
            out.append(F.pil_to_tensor(image))
        return torch.stack(out)

    def __call__(self, x: torch.Tensor, reseed: Reseed | None = None) -> torch.Tensor:
        """The batch steps on a (N, C, H, W) uint8 batch; `reseed(k)` runs before sample k
        draws. Returns the float batch (a view for GreyToRGB, as per image)."""
        for t in self.pads:
            x = t(x)
        crop = self.crop
        if crop is not None and crop.padding is not None:
            x = F.pad(x, crop.padding, crop.fill, crop.padding_mode)
        if crop is not None or self.flip is not None:
            x = torch.stack([self._crop_flip(x[k], k, reseed) for k in range(len(x))])
        # ToTensor's arithmetic, on a contiguous batch as ToTensor's (conv kernels follow layout).
        x = x.contiguous().to(torch.get_default_dtype()).div(255)
        for t in self.tail:
            x = t(x)
        return x

    def _crop_flip(self, image: torch.Tensor, k: int, reseed: Reseed | None) -> torch.Tensor:
        """Sample k's crop (a slice) and flip, drawn as RandomCrop and RandomHorizontalFlip
        draw them."""
        if reseed is not None:
            reseed(k)
        if self.crop is not None:
            top, left, h, w = self.crop.get_params(image, self.crop.size)
            image = image[:, top : top + h, left : left + w]
        if self.flip is not None and torch.rand(1) < self.flip.p:
            image = image.flip(-1)
        return image
