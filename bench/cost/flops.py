"""FLOP rules for what torch's flop counter skips: the arithmetic that SAMs are made of.

`torch.utils.flop_counter.FlopCounterMode` counts only convolutions, matmuls and attention
kernels, so gates, pooling, reductions and normalisation cost nothing and most SAMs look
free. `FLOP_RULES` adds a formula per aten op (all overloads and the in-place `op_` twin);
pass it as `FlopCounterMode(custom_mapping=FLOP_RULES)` or use `flop_counter()`.

Rules, per forward call (E = elements of the output, I = elements of the main input,
K = elements of a pooling window):

| ops                                                   | FLOPs                           |
|-------------------------------------------------------|---------------------------------|
| conv, mm/addmm/bmm/baddbmm, attention (torch's rules) | 2 per multiply-add; no bias add |
| elementwise arithmetic and activations: add, sub,     | 1 per output element (E)        |
| mul, div, pow, sqrt, rsqrt, exp, log, abs, neg,       | (a transcendental counts as 1,  |
| reciprocal, clamp, maximum, minimum, sigmoid, tanh,   | like an add)                    |
| relu, relu6/hardtanh, hardsigmoid, hardswish, silu,   |                                 |
| gelu, mish, elu, leaky_relu, softplus, ...            |                                 |
| addcmul, addcdiv (two ops fused)                      | 2 E                             |
| reductions: sum, mean, amax, amin, max/min (reducing),| 1 per input element (I)         |
| prod, cumsum, argmax, argmin, logsumexp               |                                 |
| norm, linalg_vector_norm (power, accumulate)          | 2 I                             |
| var, std, var_mean, std_mean (mean; subtract, square, | 4 I                             |
| accumulate; as SimAM spells it out)                   |                                 |
| adaptive avg/max pooling                              | 1 I                             |
| avg/max pooling with a kernel                         | K per output element (K E)      |
| batch norm, eval (running stats: scale and shift)     | 2 I                             |
| batch norm training, group norm, layer norm, instance | 5 I (mean 1, sum of squares 2,  |
| norm (statistics computed on the fly)                 | scale and shift 2)              |
| softmax, log_softmax (max, subtract, exp, sum, div)   | 5 I                             |
| views, copies, cat/stack, indexing, creation, fill,   | 0                               |
| comparisons, where; not yet ruled: interpolation     |                                 |

A composite op (e.g. `F.adaptive_avg_pool2d` to 1x1, `F.linear`, `nn.InstanceNorm2d`)
is counted through the aten ops it runs (`mean`, `addmm`, `batch_norm`). Forward ops only:
backward kernels (e.g. `threshold_backward`) are not in these rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten

FlopRule = Callable[..., int]


def _numel(shape: Any) -> int:
    """Elements of a shape; for an op returning several tensors, those of the first."""
    if isinstance(shape, tuple | list) and shape and not isinstance(shape[0], int):
        shape = shape[0]
    return math.prod(shape) if shape is not None else 0


def _per_output(k: int) -> FlopRule:
    def rule(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return k * _numel(out_shape)

    return rule


def _per_input(k: int) -> FlopRule:
    def rule(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return k * _numel(x_shape)

    return rule


def _max_min(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # max.other / min.other are elementwise (1 per output); the other overloads reduce.
    if args and isinstance(args[0], torch.Size):
        return _numel(out_shape)
    return _numel(x_shape)


def _pool(
    x_shape: Any, kernel_size: int | Sequence[int], *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    spatial = len(x_shape) - 2 if len(x_shape) > 2 else 1
    ks = [kernel_size] * spatial if isinstance(kernel_size, int) else list(kernel_size)
    if len(ks) == 1:
        ks = ks * spatial
    return math.prod(ks) * _numel(out_shape)


def _batch_norm(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    # The first bool argument is `training` in every batch-norm kernel that takes one.
    training = kwargs.get("training", next((a for a in args if isinstance(a, bool)), False))
    return (5 if training else 2) * _numel(x_shape)


ELEMENTWISE = (
    "add sub rsub mul div neg abs sign pow sqrt rsqrt square exp exp2 expm1 log log2 log10 "
    "log1p reciprocal clamp clamp_min clamp_max maximum minimum fmax fmin "
    "sigmoid tanh relu relu6 hardtanh hardsigmoid hardswish silu gelu mish elu selu celu "
    "leaky_relu softplus logit erf sin cos threshold"
).split()
FUSED2 = ("addcmul", "addcdiv")
REDUCTIONS = "sum mean amax amin prod cumsum argmax argmin logsumexp".split()
NORMS = ("norm", "linalg_vector_norm")
VARIANCE = ("var", "std", "var_mean", "std_mean")
ADAPTIVE_POOLS = (
    "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d "
    "_adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d"
).split()
KERNEL_POOLS = (
    "avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d "
    "max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices "
    "mkldnn_max_pool2d mkldnn_max_pool3d"
).split()
BATCH_NORMS = (
    "native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_functional "
    "_native_batch_norm_legit_no_training cudnn_batch_norm miopen_batch_norm"
).split()
STAT_NORMS = ("native_group_norm", "native_layer_norm")
SOFTMAX = ("_softmax", "_log_softmax", "_safe_softmax")


def _packets(names: Sequence[str]) -> list[torch._ops.OpOverloadPacket]:
    """The aten packets for `names` and their in-place twins (`mul_` is its own packet)."""
    out = []
    for name in names:
        for n in (name, name + "_"):
            if hasattr(aten, n):
                out.append(getattr(aten, n))
    return out


def _build_rules() -> dict[Any, FlopRule]:
    table: list[tuple[Sequence[str], FlopRule]] = [
        (ELEMENTWISE, _per_output(1)),
        (FUSED2, _per_output(2)),
        (REDUCTIONS, _per_input(1)),
        (("max", "min"), _max_min),
        (NORMS, _per_input(2)),
        (VARIANCE, _per_input(4)),
        (ADAPTIVE_POOLS, _per_input(1)),
        (KERNEL_POOLS, _pool),
        (BATCH_NORMS, _batch_norm),
        (STAT_NORMS, _per_input(5)),
        (SOFTMAX, _per_input(5)),
    ]
    rules: dict[Any, FlopRule] = {}
    for names, rule in table:
        for packet in _packets(names):
            rules[packet] = rule
    return rules


# Keyed by aten overload packet, as FlopCounterMode's custom_mapping expects; formulas get
# tensor shapes in place of tensors and the output shape as `out_shape`.
FLOP_RULES: dict[Any, FlopRule] = _build_rules()


def flop_counter(*, display: bool = False, depth: int = 2) -> FlopCounterMode:
    """A FlopCounterMode that applies `FLOP_RULES` on top of torch's own formulas."""
    return FlopCounterMode(display=display, depth=depth, custom_mapping=FLOP_RULES)
