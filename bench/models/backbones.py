"""The ResNet shapes by name (BACKBONES) and the SAM sharing modes: plain data, no torch,
so the CLI checks a model name against the registry itself (bench.cli.catalog)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.util.registry import Registry

Sharing = Literal["block", "stage"]
SHARING_MODES: tuple[str, ...] = ("block", "stage")


@dataclass(frozen=True)
class BackboneSpec:
    """The shape of a ResNet: block type, blocks per stage, planes per stage, stem."""

    block: Literal["basic", "bottleneck"]
    layers: tuple[int, ...]
    planes: tuple[int, ...]
    stem: Literal["cifar", "imagenet"]
    input_size: int
    default_classes: int
    notes: str = ""

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(f"layer{i + 1}" for i in range(len(self.layers)))

    @property
    def slot_ids(self) -> tuple[str, ...]:
        return tuple(f"{s}.{b}" for s, n in zip(self.stage_names, self.layers) for b in range(n))

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return tuple(p * self.expansion for p in self.planes)


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def _register(name: str, spec: BackboneSpec) -> None:
    BACKBONES.register(name)(spec)


# CIFAR ResNets (He et al. 2016): 3 stages of widths 16/32/64, depth = 6n+2 (basic) or
# 9n+2 (bottleneck, ResNet-164 as in DIANet and the SAM papers' CIFAR tables).
for _depth in (20, 32, 44, 56, 110):
    _n = (_depth - 2) // 6
    _register(
        f"resnet{_depth}",
        BackboneSpec("basic", (_n,) * 3, (16, 32, 64), "cifar", 32, 10, "CIFAR, basic blocks"),
    )
_register(
    "resnet164",
    BackboneSpec("bottleneck", (18,) * 3, (16, 32, 64), "cifar", 32, 100, "CIFAR, bottlenecks"),
)
# ImageNet ResNets with torchvision's layout (v1.5: stride on the 3x3 conv).
for _name, _block, _layers in (
    ("resnet18", "basic", (2, 2, 2, 2)),
    ("resnet34", "basic", (3, 4, 6, 3)),
    ("resnet50", "bottleneck", (3, 4, 6, 3)),
    ("resnet101", "bottleneck", (3, 4, 23, 3)),
    ("resnet152", "bottleneck", (3, 8, 36, 3)),
):
    _register(
        _name,
        BackboneSpec(_block, _layers, (64, 128, 256, 512), "imagenet", 224, 1000, "ImageNet"),
    )
