"""The SAM (self-attention module) zoo: named factories `fn(channels, **kwargs) -> nn.Module`.

A SAM maps an NCHW tensor to one of the same shape (x times its gate). Stateful SAMs set
`stateful = True` and take `forward(x, state)` with the caller's per-stage state dict.
Standard modules come from timm.layers; the others live in bench.models.layers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

# No Gather-Excite: timm 1.0.31's GatherExcite(use_mlp=True) fails in __init__ (ConvMlp call bug).
from timm.layers import EcaModule, GlobalContext, SEModule
from timm.layers.cbam import CbamModule  # not re-exported by timm.layers
from torch import nn

from bench.errors import BenchError
from bench.models.layers import GCT, SGE, SRM, DIACell, SimAM
from bench.registry import Registry

SamFactory = Callable[..., nn.Module]

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
    return factory(channels, **kwargs)


def sam_defaults(name: str) -> dict[str, object]:
    """The options SAM `name` accepts, with their default values."""
    params = inspect.signature(SAMS.get(name)).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def describe_sam(name: str) -> str:
    """One-line description of SAM `name` (its factory docstring's first line)."""
    doc = inspect.getdoc(SAMS.get(name)) or ""
    return doc.splitlines()[0] if doc else ""


# Options are keyword-only and explicit (no **kwargs pass-through) so that create_sam can
# reject misspelt options and sam_defaults can list them.


@SAMS.register("se")
def se(channels: int, *, rd_ratio: float = 1 / 16, rd_divisor: int = 8) -> nn.Module:
    """Squeeze-and-Excitation (Hu et al. 2018), reduction 16, width rounded to 8; timm SEModule."""
    # timm's defaults reproduce seresnet50's SE exactly (2,530,992 params over ResNet-50).
    return SEModule(channels, rd_ratio=rd_ratio, rd_divisor=rd_divisor)


@SAMS.register("cbam")
def cbam(channels: int, *, rd_ratio: float = 1 / 16, spatial_kernel_size: int = 7) -> nn.Module:
    """CBAM channel + spatial attention (Woo et al. 2018), reduction 16, 7x7; timm CbamModule."""
    return CbamModule(channels, rd_ratio=rd_ratio, spatial_kernel_size=spatial_kernel_size)


@SAMS.register("eca")
def eca(channels: int, *, gamma: float = 2, beta: float = 1) -> nn.Module:
    """Efficient Channel Attention (Wang et al. 2020), adaptive 1-D kernel; timm EcaModule."""
    return EcaModule(channels, gamma=gamma, beta=beta)


@SAMS.register("gc")
def gc(channels: int, *, rd_ratio: float = 1 / 8) -> nn.Module:
    """Global Context block (Cao et al. 2019), scale fusion, reduction 8; timm GlobalContext."""
    # Scale fusion (not GCNet's additive default) so the module is a gate like the others.
    return GlobalContext(channels, rd_ratio=rd_ratio)


@SAMS.register("srm")
def srm(channels: int) -> nn.Module:
    """Style-based Recalibration Module (Lee et al. 2019), mean+std pooling; ours."""
    return SRM(channels)


@SAMS.register("sge")
def sge(channels: int, *, groups: int = 64) -> nn.Module:
    """Spatial Group-wise Enhance (Li et al. 2019), gcd(C, 64) groups; ours."""
    return SGE(channels, groups=groups)


@SAMS.register("simam")
def simam(channels: int, *, e_lambda: float = 1e-4) -> nn.Module:
    """SimAM parameter-free energy attention (Yang et al. 2021), lambda 1e-4; ours."""
    return SimAM(channels, e_lambda=e_lambda)


@SAMS.register("gct")
def gct(channels: int, *, mode: str = "l2") -> nn.Module:
    """Gated Channel Transformation (Yang et al. 2020), l2 embedding; ours."""
    if mode not in ("l2", "l1"):
        raise BenchError(f"SAM 'gct': mode must be 'l2' or 'l1', not {mode!r}")
    return GCT(channels, mode=mode)


@SAMS.register("dia")
def dia(channels: int, *, reduction: int = 4) -> nn.Module:
    """DIANet LSTM-like cell, stateful over a stage's blocks (Huang et al. 2020), r 4; ours."""
    return DIACell(channels, reduction=reduction)
