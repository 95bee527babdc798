"""A task's `--opt KEY=VALUE` options, declared by its option dataclasses.

Each task installs an entry point in the group `ticketbench.tasks` naming its light options
module (pyproject.toml), which defines `OPTIONS = TaskOptions(...)`
from the dataclasses its adapter reads, so the keys, their types, defaults and help exist
once: `bench transfer --opt` converts text with them (bench.engine.hparams.from_text) and
`bench list options` prints them.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from bench.engine.hparams import HParams, field_types, from_text, show_value, type_name
from bench.util.errors import BenchError

ENTRY_POINT_GROUP = "ticketbench.tasks"


@dataclasses.dataclass(frozen=True)
class OptionGroup:
    """The fields of one dataclass as option keys.

    into: "" puts a key at the top of the task's options dict, else under options[into]
    (e.g. "hparams"); skip: fields set another way (--seeds, --epochs); bases: named starting
    points of the fields (a task's protocols), quoted as the defaults and used to check values.
    title: the group's heading where options are listed.
    """

    cls: type[HParams]
    into: str = ""
    skip: tuple[str, ...] = ()
    bases: Mapping[str, HParams] = dataclasses.field(default_factory=dict)
    title: str = ""  # a heading in `bench list options`

    def fields(self) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(self.cls) if f.name not in self.skip]

    def default_text(self, name: str) -> str:
        """The default of field `name`: one value, or each base's where they differ."""
        f = next(f for f in dataclasses.fields(self.cls) if f.name == name)
        if "shown" in f.metadata:
            return str(f.metadata["shown"])
        bases = self.bases or {"": self.cls()}
        values = {label: show_value(getattr(b, name)) for label, b in bases.items()}
        if len(set(values.values())) == 1:
            return next(iter(values.values()))
        return ", ".join(f"{label} {v}" for label, v in values.items())

    def check(self, given: Mapping[str, Any]) -> None:
        """Raise the BenchError of `given` if it is bad over every base (else the run decides)."""
        error: BenchError | None = None
        for base in self.bases.values() or [self.cls()]:
            try:
                self.cls.from_dict(given, base=base)
                return
            except BenchError as e:
                error = e
        if error is not None:
            raise error


@dataclasses.dataclass(frozen=True)
class Option:
    """One key: its type (an annotation, or the names it accepts), default text and help."""

    key: str
    type: Any
    default: str
    help: str
    group: OptionGroup
    bound: str = ""  # the range the field declares, e.g. ">= 1" (HParams.bound_checks)

    @property
    def type_text(self) -> str:
        text = "|".join(self.type) if isinstance(self.type, tuple) else type_name(self.type)
        return f"{text} {self.bound}" if self.bound else text


@dataclasses.dataclass(frozen=True)
class WorkQuery:
    """What a task's `work` hook is asked by a study's plan: one arm of one transfer cell,
    before any data is read (folders may be listed; the sample may not be written yet)."""

    dataset: str
    options: Mapping[str, Any]  # the cell's typed --opt values (TaskOptions.parse)
    epochs: int | None  # --epochs / --iters as the command gives them
    iters: int | None
    data_root: Path | None  # None: the default data root
    sample: bool = False  # the study writes the bundled sample into data_root first
    processes: int = 1  # DDP processes (the per-process batch is the recipe's)


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """The `--opt` keys of task `task`; `note` says where the defaults come from."""

    task: str
    groups: tuple[OptionGroup, ...]
    note: str = ""
    adapter: str = ""  # the module whose import registers the task's TransferTask
    datasets: tuple[str, ...] = ()  # in the order `bench transfer --task all` runs them
    layouts: Mapping[str, str] = dataclasses.field(default_factory=dict)  # dataset -> files
    # `bench list presets`: the task's named recipes as (name, summary) rows for a glob.
    recipes: Callable[[str], list[tuple[str, str]]] | None = None
    recipes_title: str = ""
    # Images one arm of a cell processes (epochs x images, exact), for `bench study plan`;
    # None where the task cannot tell without reading data.
    work: Callable[[WorkQuery], int | None] | None = None

    def options(self) -> dict[str, Option]:
        out = {}
        for g in self.groups:
            types = field_types(g.cls)
            for f in g.fields():
                choices = f.metadata.get("choices")  # names, or a function giving them
                tp = tuple(choices() if callable(choices) else choices or ()) or types[f.name]
                out[f.name] = Option(f.name, tp, g.default_text(f.name), f.metadata["help"], g,
                                     f.metadata.get("bound", ""))  # fmt: skip
        return out

    def parse(self, given: Mapping[str, Any], flag: str = "--opt") -> dict[str, Any]:
        """Typed options from {key: text} (values that are not text are kept): one-line
        BenchErrors name the key and what it expects; unknown keys list the known ones."""
        options, out = self.options(), {}
        by_group: dict[int, dict[str, Any]] = {}
        for key, text in given.items():
            if key not in options:
                raise BenchError(
                    f"{flag} {key}: {self.task} has no option {key!r} (options: "
                    f"{', '.join(options)}; bench list options {self.task})"
                )
            opt = options[key]
            value = self._value(opt, text, flag)
            (out.setdefault(opt.group.into, {}) if opt.group.into else out)[key] = value
            by_group.setdefault(id(opt.group), {})[key] = value
        for g in self.groups:
            if id(g) in by_group:
                try:
                    g.check(by_group[id(g)])
                except BenchError as e:
                    raise BenchError(f"{flag}: {e}") from None
        return out

    def _value(self, opt: Option, text: Any, flag: str) -> Any:
        if not isinstance(text, str):
            return text
        tp = field_types(opt.group.cls)[opt.key]
        default = getattr(opt.group.cls(), opt.key)
        given = f"{flag} {opt.key}={text}" if flag == "--opt" else f"{flag} {text}"
        try:
            value = from_text(tp, text, default)
        except ValueError as e:
            raise BenchError(f"{given}: {e}") from None
        if isinstance(opt.type, tuple) and value is not None and value not in opt.type:
            raise BenchError(f"{given}: expected one of {', '.join(opt.type)}")
        return value


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def task_names() -> list[str]:
    """Every installed task (entry point group `ticketbench.tasks`), sorted."""
    return sorted(_entry_points())


def task_options(task: str) -> TaskOptions:
    """The TaskOptions of `task` (its options module is light: no torch, mmseg or data)."""
    found = _entry_points()
    if task not in found:
        raise BenchError(f"unknown task {task!r} (known: {', '.join(sorted(found))})")
    return importlib.import_module(found[task].value).OPTIONS
