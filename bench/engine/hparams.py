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
import re
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

from bench.util.errors import BenchError, check_all
from bench.util.registry import Registry

__all__ = [
    "AUTO",
    "AUTO_PRESET",
    "PAPER_SGD",
    "PRESETS",
    "HParams",
    "TrainHParams",
    "add_hparam_args",
    "add_train_args",
    "field_types",
    "flag_type",
    "from_text",
    "hparam",
    "hparams_from_args",
    "nondefault",
    "preset_for",
    "show_value",
    "type_name",
]

H = TypeVar("H", bound="HParams")


def hparam(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with a default and the help text its command-line flag shows;
    `bound=">= 1"` (or "> 0", "in [0, 1)", ...) states the range `HParams.bound_checks`
    enforces."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def within(value: float, bound: str) -> bool:
    """Whether `value` is in `bound`: ">= X", "> X" or an interval "in [A, B)" (a bracket
    includes its end, a parenthesis excludes it)."""
    if bound.startswith(">"):
        op, limit = bound.split()
        return value >= float(limit) if op == ">=" else value > float(limit)
    low, high = (float(x) for x in bound[4:-1].split(","))
    above = value >= low if bound[3] == "[" else value > low
    return above and (value <= high if bound[-1] == "]" else value < high)


@cache
def _hints(cls: type) -> dict[str, Any]:
    # Annotations are strings under `from __future__ import annotations`; resolve once.
    return typing.get_type_hints(cls)


def field_types(cls: type[HParams]) -> dict[str, Any]:
    """Field name -> resolved annotation, in declaration order."""
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _optional(tp: Any) -> Any:
    """X for an `X | None` annotation, else None."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0]
        raise TypeError(f"union-typed hparams other than X | None are not supported: {tp!r}")
    return None


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Bring a value (from code or JSON) to the field's canonical Python type.

    Canonical types keep hashes stable: `lr=1` and `lr=1.0` must hash alike, and a JSON list
    read back from hparams.json must compare equal to the tuple it was written from.
    """
    if (inner := _optional(tp)) is not None:
        return None if value is None else _coerce(name, inner, value)
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


# ---- text -> typed value: the one conversion for flags and `--opt KEY=VALUE` --------------
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_NAMES = {int: "an integer", float: "a number", str: "text", bool: "true or false"}


def type_name(tp: Any) -> str:
    """How a value of type `tp` is written on the command line: int, a|b, int,int,..."""
    if (inner := _optional(tp)) is not None:
        return f"{type_name(inner)} | none"
    if get_origin(tp) is Literal:
        return "|".join(map(str, get_args(tp)))
    if get_origin(tp) is tuple:
        elem = type_name(get_args(tp)[0])
        return f"{elem},{elem},..."
    return getattr(tp, "__name__", str(tp))


def from_text(tp: Any, text: str, default: Any = None) -> Any:
    """The value of `text` for a field of type `tp`: "0.5", "false", "768x1024", "30,60",
    "none" (an optional field). A tuple field whose `default` holds two values reads a
    single number N as N,N (a square size). ValueError says what was expected."""
    text = text.strip()
    if (inner := _optional(tp)) is not None:
        return None if text.lower() in ("none", "") else from_text(inner, text, default)
    if get_origin(tp) is Literal:
        for choice in get_args(tp):
            if text == str(choice):
                return choice
        raise ValueError(f"expected one of {', '.join(map(str, get_args(tp)))}, not {text!r}")
    if get_origin(tp) is tuple:
        parts = [p for p in re.split(r"[,x]", text) if p.strip()]
        try:
            values = tuple(from_text(get_args(tp)[0], p) for p in parts)
        except ValueError:
            raise ValueError(f"expected {type_name(tp)} (or HxW), not {text!r}") from None
        square = isinstance(default, tuple) and len(default) == 2 and len(values) == 1
        return values * 2 if square else values
    if tp is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"expected true or false, not {text!r}")
        return text.lower() in _TRUE
    try:
        value = tp(text)
    except ValueError:
        raise ValueError(f"expected {_NAMES.get(tp, type_name(tp))}, not {text!r}") from None
    if tp is float and not math.isfinite(value):
        raise ValueError(f"expected a finite number, not {text!r}")
    return value


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

    def bound_checks(self) -> list[tuple[bool, str]]:
        """(ok, "NAME must be BOUND") per field declared with a `bound` (for check_all)."""
        fields = dataclasses.fields(self)
        bounded = [(f.name, f.metadata["bound"]) for f in fields if "bound" in f.metadata]
        return [(within(getattr(self, n), b), f"{n} must be {b}") for n, b in bounded]

    # Fields added after run hashes, search config hashes and record protocols were
    # published: left out of to_dict while at their default, so all of those stay as they
    # were; named (and so hashed) once set.
    QUIET_DEFAULTS: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (tuples become lists), but a QUIET_DEFAULTS
        field at its default."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._items()}

    def _items(self) -> list[tuple[str, Any]]:
        return [
            (f.name, getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in self.QUIET_DEFAULTS or getattr(self, f.name) != f.default
        ]

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
    return {k: v for k, v in full.items() if k not in ref or v != ref[k]}


@dataclasses.dataclass(frozen=True)
class TrainHParams(HParams):
    """How to train a network. The defaults are the `short` preset (2-core CPU scale)."""

    QUIET_DEFAULTS = frozenset({"eval_every", "eval_limit"})

    epochs: int = hparam(3, "number of training epochs", bound=">= 1")
    batch_size: int = hparam(
        128, "global batch size (split evenly across torchrun ranks)", bound=">= 1"
    )
    eval_batch_size: int = hparam(256, "batch size for evaluation", bound=">= 1")
    lr: float = hparam(0.1, "peak learning rate (SGD)", bound="> 0")
    momentum: float = hparam(0.9, "SGD momentum", bound="in [0, 1)")
    nesterov: bool = hparam(False, "use Nesterov momentum")
    weight_decay: float = hparam(5e-4, "L2 weight decay", bound=">= 0")
    decay_norm_and_bias: bool = hparam(
        True, "apply weight decay to 1-d parameters too (BN/bias); the paper's code does"
    )
    schedule: Literal["step", "cosine"] = hparam("cosine", "learning-rate schedule after warm-up")
    milestones: tuple[int, ...] = hparam(
        (), "step schedule: epochs where lr is multiplied by gamma"
    )
    gamma: float = hparam(0.1, "step schedule: lr multiplier at each milestone", bound="> 0")
    warmup_epochs: int = hparam(1, "epochs of linear lr warm-up (stepped per iteration)")
    label_smoothing: float = hparam(0.0, "cross-entropy label smoothing", bound="in [0, 1)")
    amp: bool = hparam(False, "mixed precision: autocast on CUDA and CPU")
    amp_dtype: Literal["bf16", "fp16"] = hparam("bf16", "autocast dtype; fp16 adds a GradScaler")
    channels_last: bool = hparam(
        False,
        "channels-last memory format, on CUDA and CPU (on 2 CPU cores, resnet20-se training "
        "at batch 128 ran 1.27x as fast, ResNet-50 at 112 px about the same; on CPU the "
        "first layers' weight gradients are less exact: about 1e-3 of their norm from "
        "float64, against 1e-6 without it); off by default",
    )
    compile: bool = hparam(False, "torch.compile the training forward")
    num_workers: int = hparam(0, "DataLoader worker processes", bound=">= 0")
    # Defaults leave run hashes as they were (only non-default fields are hashed).
    eval_every: int = hparam(
        1, "score the held-out / eval sets every N epochs (and after the last)", bound=">= 1"
    )
    eval_limit: int = hparam(
        0, "score each eval set on a fixed seeded subset of N items (0: all of it)", bound=">= 0"
    )
    seed: int = hparam(0, "seed of every RNG: init, data order, augmentation, dropout")

    def validate(self) -> None:
        checks = [
            *self.bound_checks(),
            (not self.nesterov or self.momentum > 0, "nesterov needs momentum > 0"),
            (0 <= self.warmup_epochs <= self.epochs, "warmup_epochs must be in [0, epochs]"),
            (list(self.milestones) == sorted(set(self.milestones)), "milestones must increase"),
            (
                all(0 < m < self.epochs for m in self.milestones),
                "milestones must be in (0, epochs)",
            ),
        ]
        check_all(checks, "training hparams")

    def with_epochs(self, epochs: int | None) -> TrainHParams:
        """The same schedule over `epochs`: a step schedule's milestones (and the warm-up)
        scale proportionally, so overriding a preset's budget never breaks it."""
        if epochs is None or epochs == self.epochs:
            return self
        scaled = (round(m * epochs / self.epochs) for m in self.milestones)
        milestones = tuple(sorted({m for m in scaled if 0 < m < epochs}))
        warmup = min(self.warmup_epochs, epochs)
        return dataclasses.replace(self, epochs=epochs, milestones=milestones, warmup_epochs=warmup)

    def summary(self) -> str:
        """One line for listings: epochs, batch, optimizer and schedule."""
        sched = self.schedule
        if self.schedule == "step":
            steps = ",".join(map(str, self.milestones))
            sched = f"x{self.gamma:g} at {steps}" if steps else "constant"
        warm = f", warm-up {self.warmup_epochs}" if self.warmup_epochs else ""
        return (
            f"{self.epochs} epochs, batch {self.batch_size}, SGD lr {self.lr:g} {sched}{warm}, "
            f"momentum {self.momentum:g}, wd {self.weight_decay:g}"
        )


# Presets are data. Sources: /work/shared/reference/paper.md, "Training protocols used by
# this line of work" and "Method, as the official code does it".
PRESETS: Registry[TrainHParams] = Registry("training preset")
# The embedded default: a few minutes on a 2-core CPU; the dataclass defaults ARE this preset.
PRESETS.register("short")(TrainHParams())
# The SGD recipe of this line of work's CIFAR and ImageNet protocols (and of the official
# search's supernet): lr 0.1, momentum 0.9, wd 1e-4, lr x0.1 at the milestones, no warm-up.
PAPER_SGD: Mapping[str, Any] = types.MappingProxyType(
    {
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "schedule": "step",
        "gamma": 0.1,
        "warmup_epochs": 0,
    }
)
# CIFAR ResNet-164 (bottleneck): batch 128, 164 epochs, lr x0.1 at epochs 81 and 122
# (paper.md, training protocols).
PRESETS.register("cifar-resnet164")(
    TrainHParams(epochs=164, batch_size=128, milestones=(81, 122), **PAPER_SGD)
)
# ImageNet ResNet-50 ticket retraining: 120 epochs, lr x0.1 every 30 epochs, batch 256
# (paper.md, "The ticket is retrained from scratch"). 8 workers are not from the paper:
# JPEG decoding at this scale needs them.
PRESETS.register("imagenet-resnet50")(
    TrainHParams(epochs=120, batch_size=256, milestones=(30, 60, 90), num_workers=8, **PAPER_SGD)
)


AUTO = "auto"  # --preset auto: the dataset's own protocol
# The paper's protocol per dataset (paper.md, "Training protocols used by this line of
# work"); the embedded default gets the short CPU preset.
AUTO_PRESET = {
    "cifar10": "cifar-resnet164",
    "cifar100": "cifar-resnet164",
    "imagenet": "imagenet-resnet50",
    "fashion-mnist": "short",
}


def preset_for(name: str, dataset: str, table: Mapping[str, str] = AUTO_PRESET) -> str:
    """The preset `--preset NAME` means for `dataset`: auto resolved by `table` (training's
    by default; "short" for a dataset it lacks), any other name as given."""
    return table.get(dataset, "short") if name == AUTO else name


# --- command line -----------------------------------------------------------------------


def _flag(name: str, prefix: str) -> str:
    return "--" + (prefix + name).replace("_", "-")


def _dest(name: str, prefix: str) -> str:
    return (prefix + name).replace("-", "_")


def flag_type(tp: Any, default: Any = None) -> Any:
    """An argparse `type=` that reads a flag's text with `from_text`."""

    def parse(text: str) -> Any:
        try:
            return from_text(tp, text, default)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = type_name(tp)
    return parse


def show_value(value: Any) -> str:
    """A default as the command line writes it: 30,60 for a tuple, "" for an empty one."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or '""'
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or value == "":
        return "none" if value is None else '""'
    return str(value)


_METAVARS = {int: "N", float: "X", str: "TEXT"}


def add_hparam_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[HParams] = TrainHParams,
    *,
    prefix: str = "",
    shown_defaults: HParams | None = None,
    skip: tuple[str, ...] = (),
    show_defaults: bool = True,
) -> None:
    """Add one `--flag` per field of `cls` (except the fields in `skip`, which the
    command sets another way, e.g. seed from --seeds).

    Every flag defaults to None ("not given") so `hparams_from_args` can lay only the given
    flags over a preset. Bools get `--x/--no-x`; tuples are comma-separated ("" = empty).
    `shown_defaults` (e.g. the default preset) supplies the values quoted in the help;
    show_defaults False quotes none (the defaults depend on a preset chosen at run time).
    """
    shown = shown_defaults if shown_defaults is not None else cls()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = field_types(cls)[f.name]
        value = getattr(shown, f.name)
        help_text = f.metadata.get("help", "")
        said = [f.metadata["bound"]] if "bound" in f.metadata else []
        said += [f"default: {show_value(value)}"] if show_defaults else []
        if said:
            help_text += f" ({'; '.join(said)})"
        kwargs: dict[str, Any] = {"dest": _dest(f.name, prefix), "default": None}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(tp) is Literal:
            kwargs["choices"] = list(get_args(tp))
            kwargs["type"] = flag_type(tp)
        else:
            kwargs["type"] = flag_type(tp, value)
            kwargs["metavar"] = "A,B,..." if get_origin(tp) is tuple else _METAVARS.get(tp)
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
    """`--preset NAME` plus one flag per `TrainHParams` field. Under the default preset
    "auto" (the dataset's paper protocol) no flag quotes a default: they are the preset's."""
    auto = default_preset == AUTO
    parser.add_argument(
        "--preset",
        default=default_preset,
        # Shown, not enforced here: an unknown preset is a one-line BenchError at PRESETS.get.
        metavar="{" + ",".join([AUTO, *PRESETS] if auto else PRESETS) + "}",
        help=("auto: the dataset's paper protocol; " if auto else "training preset; ")
        + "the flags below override its fields (bench list presets)"
        + ("" if auto else f" (default: {default_preset})"),
    )
    shown = PRESETS.get(default_preset) if default_preset in PRESETS else None
    add_hparam_args(parser, TrainHParams, shown_defaults=shown, skip=skip, show_defaults=not auto)


def check_batch_split(batch_size: int, processes: int) -> None:
    """A global batch is split over the processes: at least one image each."""
    if batch_size < processes:
        raise BenchError(
            f"batch size {batch_size} cannot be split over {processes} processes (at least "
            "one image each): run on fewer GPUs (a study's gpus = 1) or a larger batch_size"
        )
