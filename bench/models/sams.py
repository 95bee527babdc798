"""The SAM (self-attention module) zoo: named factories `fn(channels, **kwargs) -> nn.Module`.

A SAM maps an NCHW tensor to one of the same shape (x times its gate). Stateful SAMs set
`stateful = True` and take `forward(x, state)` with the caller's per-stage state dict.
Standard modules come from timm.layers; the others live in bench.models.layers. Each
factory imports its module when called: the registry itself is light (no torch), so the CLI
checks SAM names against it (bench.cli.catalog).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeGuard

from bench.util.errors import BenchError
from bench.util.registry import Registry

if TYPE_CHECKING:
    from torch import nn

SamFactory = Callable[..., "nn.Module"]

SAMS: Registry[SamFactory] = Registry("SAM")


def create_sam(name: str, channels: int, **kwargs: object) -> nn.Module:
    """Build SAM `name` for `channels` channels; unknown names or options raise BenchError."""
    factory = SAMS.get(name)
    if channels < 1:
        raise BenchError(f"SAM {name!r} needs channels >= 1, got {channels}")
    try:
        inspect.signature(factory).bind(channels, **kwargs)
    except TypeError:
        known = ", ".join(sam_defaults(name)) or "none"
        bad = ", ".join(sorted(kwargs))
        raise BenchError(f"SAM {name!r}: bad options ({bad}); accepted: {known}") from None
    check_sam_args(name, kwargs)
    return factory(channels, **kwargs)


def sam_defaults(name: str) -> dict[str, object]:
    """The options SAM `name` accepts, with their default values."""
    params = inspect.signature(SAMS.get(name)).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _real(v: object) -> TypeGuard[float]:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an int beyond any float
        return False


def _int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


# What each SAM argument accepts (the same name means the same thing in every SAM). Bounds
# keep a typo from building a network that crashes later (rd_divisor 0) or fills memory.
SAM_ARG_RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "rd_ratio": (lambda v: _real(v) and 0 < v <= 1, "a number in (0, 1]"),
    "rd_divisor": (lambda v: _int(v) and 1 <= v <= 1024, "an integer in 1..1024"),
    "spatial_kernel_size": (
        lambda v: _int(v) and 1 <= v <= 31 and v % 2 == 1,
        "an odd integer in 1..31",
    ),
    # ECA's kernel is |log2(C) + beta| / gamma wide: these keep it below 60.
    "gamma": (lambda v: _real(v) and 0.5 <= v <= 16, "a number in [0.5, 16]"),
    "beta": (lambda v: _real(v) and -16 <= v <= 16, "a number in [-16, 16]"),
    "groups": (lambda v: _int(v) and 1 <= v <= 4096, "an integer in 1..4096"),
    "e_lambda": (lambda v: _real(v) and v > 0, "a number > 0"),
    "mode": (lambda v: isinstance(v, str) and v in ("l2", "l1"), "'l2' or 'l1'"),
    "reduction": (lambda v: _int(v) and 1 <= v <= 1024, "an integer in 1..1024"),
}


def check_sam_args(name: str, args: dict) -> None:
    """BenchError naming the first argument SAM `name` does not take or whose value is wrong."""
    known = sam_defaults(name)
    for key, value in args.items():
        if key not in known:
            takes = ", ".join(known) or "none"
            raise BenchError(f"{name} takes no argument {key!r} (takes: {takes})")
        ok, what = SAM_ARG_RULES.get(key, (lambda _: True, ""))  # a plugin's own: its own checks
        if not ok(value):
            raise BenchError(f"{name} argument {key}={value!r}: expected {what}")


def describe_sam(name: str) -> str:
    """One-line description of SAM `name` (its factory docstring's first line)."""
    doc = inspect.getdoc(SAMS.get(name)) or ""
    return doc.splitlines()[0] if doc else ""


# No Gather-Excite: timm 1.0.31's GatherExcite(use_mlp=True) fails in __init__ (ConvMlp call bug).
# Options are keyword-only and explicit (no **kwargs pass-through) so that create_sam can
# reject misspelt options and sam_defaults can list them.


@SAMS.register("se")
def se(channels: int, *, rd_ratio: float = 1 / 16, rd_divisor: int = 8) -> nn.Module:
    """Squeeze-and-Excitation (Hu et al. 2018), reduction 16, width rounded to 8; timm SEModule."""
    # timm's defaults reproduce seresnet50's SE exactly (2,530,992 params over ResNet-50).
    from timm.layers import SEModule

    return SEModule(channels, rd_ratio=rd_ratio, rd_divisor=rd_divisor)


@SAMS.register("cbam")
def cbam(channels: int, *, rd_ratio: float = 1 / 16, spatial_kernel_size: int = 7) -> nn.Module:
    """CBAM channel + spatial attention (Woo et al. 2018), reduction 16, 7x7; timm CbamModule."""
    from timm.layers.cbam import CbamModule  # not re-exported by timm.layers

    return CbamModule(channels, rd_ratio=rd_ratio, spatial_kernel_size=spatial_kernel_size)


@SAMS.register("eca")
def eca(channels: int, *, gamma: float = 2, beta: float = 1) -> nn.Module:
    """Efficient Channel Attention (Wang et al. 2020), adaptive 1-D kernel; timm EcaModule."""
    from timm.layers import EcaModule

    return EcaModule(channels, gamma=gamma, beta=beta)


@SAMS.register("gc")
def gc(channels: int, *, rd_ratio: float = 1 / 8) -> nn.Module:
    """Global Context block (Cao et al. 2019), scale fusion, reduction 8; timm GlobalContext."""
    # Scale fusion (not GCNet's additive default) so the module is a gate like the others.
    from timm.layers import GlobalContext

    return GlobalContext(channels, rd_ratio=rd_ratio)


@SAMS.register("srm")
def srm(channels: int) -> nn.Module:
    """Style-based Recalibration Module (Lee et al. 2019), mean+std pooling; ours."""
    from bench.models.layers import SRM

    return SRM(channels)


@SAMS.register("sge")
def sge(channels: int, *, groups: int = 64) -> nn.Module:
    """Spatial Group-wise Enhance (Li et al. 2019), gcd(C, 64) groups; ours."""
    from bench.models.layers import SGE

    return SGE(channels, groups=groups)


@SAMS.register("simam")
def simam(channels: int, *, e_lambda: float = 1e-4) -> nn.Module:
    """SimAM parameter-free energy attention (Yang et al. 2021), lambda 1e-4; ours."""
    from bench.models.layers import SimAM

    return SimAM(channels, e_lambda=e_lambda)


@SAMS.register("gct")
def gct(channels: int, *, mode: str = "l2") -> nn.Module:
    """Gated Channel Transformation (Yang et al. 2020), l2 embedding; ours."""
    from bench.models.layers import GCT

    return GCT(channels, mode=mode)


@SAMS.register("dia")
def dia(channels: int, *, reduction: int = 4) -> nn.Module:
    """DIANet LSTM-like cell, stateful over a stage's blocks (Huang et al. 2020), r 4; ours."""
    from bench.models.layers import DIACell

    return DIACell(channels, reduction=reduction)
