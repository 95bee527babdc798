"""Typed, frozen hyperparameter dataclasses that generate their own command-line flags.

A field's annotation gives the flag's type, its `metadata["help"]` the help text. Only
fields that differ from the dataclass defaults enter a run directory's hash (see
`bench.engine.rundir`), so adding a new field WITH A DEFAULT keeps every old hash valid,
while changing an existing default silently re-points old hashes: don't.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, TypeVar, get_args, get_origin

from bench.errors import BenchError
from bench.registry import Registry

__all__ = [
    "PRESETS",
    "HParams",
    "TrainHParams",
    "add_hparam_args",
    "add_train_args",
    "field_types",
    "hparam",
    "hparams_from_args",
    "nondefault",
    "train_hparams_from_args",
]

H = TypeVar("H", bound="HParams")


def hparam(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with a default and the help text its command-line flag shows."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@cache
def _hints(cls: type) -> dict[str, Any]:
    # Annotations are strings under `from __future__ import annotations`; resolve once.
    return typing.get_type_hints(cls)


def field_types(cls: type[HParams]) -> dict[str, Any]:
    """Field name -> resolved annotation, in declaration order."""
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_tuple(tp: Any) -> bool:
    return get_origin(tp) is tuple


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Bring a value (from code or JSON) to the field's canonical Python type.

    Canonical types keep hashes stable: `lr=1` and `lr=1.0` must hash alike, and a JSON list
    read back from hparams.json must compare equal to the tuple it was written from.
    """
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(map(str, get_args(tp)))
            raise BenchError(f"{name} must be one of {choices}, not {value!r}")
        return value
    if origin is tuple:
        elem = get_args(tp)[0]
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise BenchError(f"{name} must be a sequence, not {value!r}")
        return tuple(_coerce(name, elem, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"{name}: union-typed hparams are not supported")
    if tp is bool:
        if not isinstance(value, bool):
            raise BenchError(f"{name} must be true or false, not {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise BenchError(f"{name} must be an integer, not {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BenchError(f"{name} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise BenchError(f"{name} must be finite, not {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise BenchError(f"{name} must be a string, not {value!r}")
        return value
    raise TypeError(f"{name}: unsupported hparam type {tp!r}")


@dataclasses.dataclass(frozen=True)
class HParams:
    """Base for frozen hyperparameter records: type coercion, dict round trip, validation.

    Subclasses declare fields with a default and `metadata={"help": ...}` and may override
    `validate` (raise BenchError: hparams usually come from the command line).
    """

    def __post_init__(self) -> None:
        for name, tp in field_types(type(self)).items():
            # Frozen: canonicalise through object.__setattr__.
            object.__setattr__(self, name, _coerce(name, tp, getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Check cross-field constraints; raise BenchError."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._items()}

    def _items(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]

    @classmethod
    def from_dict(cls: type[H], data: Mapping[str, Any], *, base: H | None = None) -> H:
        """Build from a (JSON) dict; absent fields come from `base` or the defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise BenchError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        start = base if base is not None else cls()
        return dataclasses.replace(start, **dict(data))

    def replace(self: H, **changes: Any) -> H:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def nondefault(hp: HParams) -> dict[str, Any]:
    """The JSON-able fields of `hp` that differ from its class defaults (what gets hashed)."""
    default = type(hp)()
    full, ref = hp.to_dict(), default.to_dict()
    return {k: v for k, v in full.items() if v != ref[k]}


@dataclasses.dataclass(frozen=True)
class TrainHParams(HParams):
    """How to train a network. The defaults are the `short` preset (2-core CPU scale)."""

    epochs: int = hparam(3, "number of training epochs")
    batch_size: int = hparam(128, "global batch size (split evenly across torchrun ranks)")
    eval_batch_size: int = hparam(256, "batch size for evaluation")
    lr: float = hparam(0.1, "peak learning rate (SGD)")
    momentum: float = hparam(0.9, "SGD momentum")
    nesterov: bool = hparam(False, "use Nesterov momentum")
    weight_decay: float = hparam(5e-4, "L2 weight decay")
    decay_norm_and_bias: bool = hparam(
        True, "apply weight decay to 1-d parameters too (BN/bias); the paper's code does"
    )
    schedule: Literal["step", "cosine"] = hparam("cosine", "learning-rate schedule after warm-up")
    milestones: tuple[int, ...] = hparam(
        (), "step schedule: epochs where lr is multiplied by gamma"
    )
    gamma: float = hparam(0.1, "step schedule: lr multiplier at each milestone")
    warmup_epochs: int = hparam(1, "epochs of linear lr warm-up (stepped per iteration)")
    label_smoothing: float = hparam(0.0, "cross-entropy label smoothing")
    amp: bool = hparam(False, "mixed precision (CUDA only; ignored on CPU)")
    amp_dtype: Literal["bf16", "fp16"] = hparam("bf16", "autocast dtype; fp16 adds a GradScaler")
    channels_last: bool = hparam(False, "channels-last memory format (CUDA only; ignored on CPU)")
    compile: bool = hparam(False, "torch.compile the training forward")
    num_workers: int = hparam(0, "DataLoader worker processes")
    seed: int = hparam(0, "seed of every RNG: init, data order, augmentation, dropout")

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.eval_batch_size >= 1, "eval_batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (not self.nesterov or self.momentum > 0, "nesterov needs momentum > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.gamma > 0, "gamma must be > 0"),
            (0 <= self.warmup_epochs <= self.epochs, "warmup_epochs must be in [0, epochs]"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (list(self.milestones) == sorted(set(self.milestones)), "milestones must increase"),
            (
                all(0 < m < self.epochs for m in self.milestones),
                "milestones must be in (0, epochs)",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise BenchError(f"bad training hparams: {msg}")

    def with_epochs(self, epochs: int | None) -> TrainHParams:
        """The same schedule over `epochs`: a step schedule's milestones (and the warm-up)
        scale proportionally, so overriding a preset's budget never breaks it."""
        if epochs is None or epochs == self.epochs:
            return self
        scaled = (round(m * epochs / self.epochs) for m in self.milestones)
        milestones = tuple(sorted({m for m in scaled if 0 < m < epochs}))
        warmup = min(self.warmup_epochs, epochs)
        return dataclasses.replace(self, epochs=epochs, milestones=milestones, warmup_epochs=warmup)


# Presets are data. Sources: /work/shared/reference/paper.md, "Training protocols used by
# this line of work" and "Method, as the official code does it".
PRESETS: Registry[TrainHParams] = Registry("training preset")
# The embedded default: a few minutes on a 2-core CPU; the dataclass defaults ARE this preset.
PRESETS.register("short")(TrainHParams())
# CIFAR ResNet-164 (bottleneck): batch 128, SGD lr 0.1, momentum 0.9, wd 1e-4, 164 epochs,
# lr x0.1 at epochs 81 and 122 (paper.md, training protocols).
PRESETS.register("cifar-resnet164")(
    TrainHParams(
        epochs=164,
        batch_size=128,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        milestones=(81, 122),
        gamma=0.1,
        warmup_epochs=0,
    )
)
# ImageNet ResNet-50 ticket retraining: 120 epochs, lr 0.1 x0.1 every 30 epochs, momentum
# 0.9, wd 1e-4, batch 256 (paper.md, "The ticket is retrained from scratch").
PRESETS.register("imagenet-resnet50")(
    TrainHParams(
        epochs=120,
        batch_size=256,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="step",
        milestones=(30, 60, 90),
        gamma=0.1,
        warmup_epochs=0,
        num_workers=8,  # not from the paper: JPEG decoding at this scale needs workers
    )
)


# --- command line -----------------------------------------------------------------------


def _flag(name: str, prefix: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def _dest(name: str, prefix: str) -> str:
    return (prefix + name).replace("-", "_")


def _tuple_parser(name: str, elem: type) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            return tuple(elem(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name}: expected comma-separated {elem.__name__}s, got {text!r}"
            ) from None

    parse.__name__ = f"comma-separated {elem.__name__}s"
    return parse


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or '""'
    return str(value)


def add_hparam_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[HParams] = TrainHParams,
    *,
    prefix: str = "",
    shown_defaults: HParams | None = None,
    skip: tuple[str, ...] = (),
) -> None:
    """Add one `--flag` per field of `cls` (except the fields in `skip`, which the
    command sets another way, e.g. seed from --seeds).

    Every flag defaults to None ("not given") so `hparams_from_args` can lay only the given
    flags over a preset. Bools get `--x/--no-x`; tuples are comma-separated ("" = empty).
    `shown_defaults` (e.g. the default preset) supplies the values quoted in the help.
    """
    shown = shown_defaults if shown_defaults is not None else cls()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = field_types(cls)[f.name]
        help_text = f"{f.metadata.get('help', '')} (default: {_show(getattr(shown, f.name))})"
        kwargs: dict[str, Any] = {"dest": _dest(f.name, prefix), "default": None}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(tp) is Literal:
            kwargs["choices"] = list(get_args(tp))
            kwargs["type"] = type(get_args(tp)[0])
        elif _is_tuple(tp):
            kwargs["type"] = _tuple_parser(f.name, get_args(tp)[0])
            kwargs["metavar"] = "A,B,..."
        else:
            kwargs["type"] = tp
        parser.add_argument(_flag(f.name, prefix), help=help_text, **kwargs)


def hparams_from_args(args: argparse.Namespace, base: H, *, prefix: str = "") -> H:
    """`base` with every flag that was given on the command line laid over it; a new epoch
    budget first rescales the base's schedule (TrainHParams.with_epochs), then explicit
    flags (e.g. --milestones) win."""
    given = {}
    for f in dataclasses.fields(base):
        value = getattr(args, _dest(f.name, prefix), None)
        if value is not None:
            given[f.name] = value
    if "epochs" in given and isinstance(base, TrainHParams):
        base = base.with_epochs(given.pop("epochs"))  # type: ignore[assignment]
    return dataclasses.replace(base, **given)


def add_train_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    default_preset: str = "short",
    skip: tuple[str, ...] = (),
) -> None:
    """`--preset NAME` plus one flag per `TrainHParams` field."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        help=f"training preset: {', '.join(PRESETS)}"
        + (" or auto (the dataset's paper protocol)" if default_preset == "auto" else "")
        + f" (default: {default_preset}); flags below override its fields",
    )
    shown = PRESETS.get(default_preset) if default_preset in PRESETS else None
    add_hparam_args(parser, TrainHParams, shown_defaults=shown, skip=skip)


def train_hparams_from_args(args: argparse.Namespace) -> TrainHParams:
    """The preset named by `--preset`, with the given flags laid over it."""
    return hparams_from_args(args, PRESETS.get(args.preset))
