"""The study file (TOML): what a grid is made of, checked key by key before any work.

    name = "demo"                  # default: the file's stem
    out = "runs/demo"              # root of every run directory (default runs/<name>)
    device = "cpu"
    seeds = [0, 1, 2]
    controls = ["full", "none"]    # arms beside each ticket (full, none, random)
    tickets = ["tickets/x.json"]   # ticket files or names in tickets/
    samples = false                # first write the embedded sample data into {out}/data
    [search]                       # a search that makes one more ticket
    dataset, model, ticket (where it is saved), preset, seed, strategy, data_root, flags, gpus
    [pretraining]                  # `bench train` of every arm x seed (absent: from scratch)
    dataset, preset, train_limit, data_root, flags, gpus
    [[transfer]]                   # one table per task
    task, datasets, decoders, opt, data_root, flags, gpus
    [leaderboard]                  format, plot, task, dataset, ticket, tolerance (%)
    [launcher]                     name (local | slurm), jobs, retries, partition,
                                   gpus_per_job, cpus_per_job, time, mem, account, sbatch

`gpus` in [search], [pretraining] or [[transfer]] overrides the launcher's gpus_per_job for
those cells (a batch-1 recipe cannot be split over several processes). `{out}` in a string
stands for `out`. `flags` are any other flags of that command, as
{flag = value} (true: a bare flag); the plan parses every command it writes with bench's own
parser, so a flag the command does not take is refused as well. Any problem is one
BenchError naming the file and the key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cli import catalog
from bench.util.errors import BenchError

CONTROLS = ("full", "none", "random")
LAUNCHERS = ("local", "slurm")
Scalar = str | int | float | bool


@dataclass(frozen=True)
class Search:
    dataset: str
    model: str
    ticket: str  # --save-ticket: where the searched ticket goes
    preset: str | None = None
    seed: int | None = None
    strategy: str | None = None
    data_root: str | None = None
    flags: dict[str, Scalar] = field(default_factory=dict)
    gpus: int | None = None  # GPUs per job (None: the launcher's gpus_per_job)


@dataclass(frozen=True)
class Pretraining:
    dataset: str
    preset: str | None = None
    train_limit: int | None = None
    data_root: str | None = None
    flags: dict[str, Scalar] = field(default_factory=dict)
    gpus: int | None = None  # GPUs per job of these cells (None: the launcher's gpus_per_job)


@dataclass(frozen=True)
class Transfer:
    task: str
    datasets: tuple[str, ...]
    decoders: tuple[str | None, ...] = (None,)
    opt: dict[str, Scalar] = field(default_factory=dict)
    data_root: str | None = None
    flags: dict[str, Scalar] = field(default_factory=dict)
    gpus: int | None = None  # e.g. 1 for a batch-1 recipe (CSRNet's) under a 4-GPU launcher


@dataclass(frozen=True)
class Leaderboard:
    format: str = "md"
    plot: bool = False
    task: str | None = None
    dataset: str | None = None
    ticket: str | None = None
    tolerance: float | None = None  # --tolerance PCT (None: the leaderboard's default)


@dataclass(frozen=True)
class Launcher:
    name: str = "local"
    jobs: int | None = None  # cells at once (None: local 1, slurm every ready cell)
    retries: int = 3  # resubmissions of a cell whose job was killed or preempted
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    time: int | None = None  # minutes
    mem: str | None = None
    account: str | None = None
    sbatch: tuple[str, ...] = ()  # extra `#SBATCH` lines, e.g. "--qos=high"


@dataclass(frozen=True)
class Study:
    path: Path
    name: str
    out: Path
    seeds: tuple[int, ...]
    device: str = "cpu"
    data_root: str | None = None
    controls: tuple[str, ...] = ()
    tickets: tuple[str, ...] = ()
    samples: bool = False
    search: Search | None = None
    pretraining: Pretraining | None = None
    transfer: tuple[Transfer, ...] = ()
    leaderboard: Leaderboard = Leaderboard()
    launcher: Launcher = Launcher()


class _Reader:
    """Checks one table's keys against what it may hold; errors name file and key."""

    def __init__(self, source: Path, table: Mapping[str, Any], where: str, out: str) -> None:
        self.source, self.table, self.where, self.out = source, dict(table), where, out

    def fail(self, key: str, msg: str) -> BenchError:
        return BenchError(f"{self.source}: {self.where}{key}: {msg}")

    def only(self, allowed: tuple[str, ...]) -> None:
        for key in self.table:
            if key not in allowed:
                raise self.fail(key, f"unknown key (expected one of {', '.join(allowed)})")

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        if key not in self.table:
            if required:
                raise self.fail(key, "missing (required)")
            return default
        value = self.table[key]
        if isinstance(value, bool) and bool not in _types(kind):
            raise self.fail(key, f"expected {_names(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {_names(kind)}, got {value!r}")
        return value.replace("{out}", self.out) if isinstance(value, str) else value

    def text(
        self,
        key: str,
        default: str | None = None,
        *,
        required: bool = False,
        choices: tuple[str, ...] = (),
    ) -> Any:
        value = self.get(key, str, default, required=required)
        if value is not None and choices and value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        if value == "":
            raise self.fail(key, "empty")
        return value

    def int(
        self, key: str, default: int | None = None, *, low: int = 0, required: bool = False
    ) -> Any:
        value = self.get(key, int, default, required=required)
        if value is not None and value < low:
            raise self.fail(key, f"expected an integer >= {low}, got {value}")
        return value

    def number(self, key: str, *, low: float = 0.0) -> float | None:
        value = self.get(key, (int, float), None)
        if value is not None and not (math.isfinite(value) and value >= low):
            raise self.fail(key, f"expected a finite number >= {low:g}, got {value}")
        return None if value is None else float(value)

    def texts(
        self,
        key: str,
        default: tuple = (),
        *,
        choices: tuple[str, ...] = (),
        nonempty: bool = False,
    ) -> tuple[str, ...]:
        values = self.get(key, list, None)
        if values is None:
            return default
        out = []
        for i, v in enumerate(values):
            if not isinstance(v, str) or not v or (choices and v not in choices):
                want = f"one of {', '.join(choices)}" if choices else "a non-empty string"
                raise self.fail(f"{key}[{i}]", f"expected {want}, got {v!r}")
            out.append(v.replace("{out}", self.out))
        if nonempty and not out:
            raise self.fail(key, "empty list")
        if len(set(out)) < len(out):
            raise self.fail(key, "lists a value twice")
        return tuple(out)

    def flags(self, key: str = "flags") -> dict[str, Scalar]:
        table = self.get(key, dict, {})
        for name, value in table.items():
            if not isinstance(value, Scalar) or name.startswith("-"):
                raise self.fail(
                    f"{key}.{name}",
                    f"expected flag = value (a string, number or true), got {value!r}",
                )
        return {
            k: v.replace("{out}", self.out) if isinstance(v, str) else v for k, v in table.items()
        }

    def sub(self, key: str, kind: type = dict) -> Any:
        return self.get(key, kind, None)


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    words = {
        str: "a string",
        int: "an integer",
        bool: "true or false",
        list: "a list",
        dict: "a table",
        float: "a number",
    }
    return " or ".join(words.get(t, t.__name__) for t in _types(kind))


def load_study(path: str | Path, out: str | Path | None = None) -> Study:
    """Read and check a study file (`out`: instead of the file's); BenchError (one line:
    file and key) on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"{path}: no such study file (shipped: {_shipped()})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BenchError(f"{path}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise BenchError(f"{path}: not TOML ({e})") from None
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise BenchError(f"{path}: name: expected letters, digits, - and _, got {name!r}")
    if out is not None:
        data["out"] = str(out)
    out_text = data.get("out", f"runs/{name}")
    top = _Reader(path, data, "", out_text if isinstance(out_text, str) else "")
    top.only(
        (
            "name",
            "out",
            "device",
            "seeds",
            "controls",
            "tickets",
            "samples",
            "data_root",
            "search",
            "pretraining",
            "transfer",
            "leaderboard",
            "launcher",
        )
    )
    seeds = top.get("seeds", list, required=True)
    if (
        not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        raise top.fail("seeds", f"expected distinct integers >= 0, got {seeds!r}")
    study = Study(
        path=path,
        name=name,
        out=Path(top.text("out", f"runs/{name}")),
        seeds=tuple(seeds),
        device=top.text("device", "cpu"),
        data_root=top.text("data_root"),
        controls=top.texts("controls", choices=CONTROLS),
        tickets=top.texts("tickets"),
        samples=top.get("samples", bool, False),
        search=_part(top, "search", _search),
        pretraining=_part(top, "pretraining", _pretraining),
        transfer=tuple(_transfers(top)),
        leaderboard=_part(top, "leaderboard", _leaderboard) or Leaderboard(),
        launcher=_part(top, "launcher", _launcher) or Launcher(),
    )
    if not study.tickets and study.search is None:
        raise BenchError(f"{path}: tickets: none, and no [search] makes one")
    return study


def _shipped() -> str:
    names = sorted(p.name for p in Path("studies").glob("*.toml"))
    return ", ".join(f"studies/{n}" for n in names) or "none here"


def _part(top: _Reader, key: str, read: Callable[[_Reader], Any]) -> Any:
    table = top.sub(key)
    return None if table is None else read(_Reader(top.source, table, f"{key}.", top.out))


def _search(r: _Reader) -> Search:
    r.only(
        ("dataset", "model", "ticket", "preset", "seed", "strategy", "data_root", "flags", "gpus")
    )
    ticket = r.text("ticket", required=True)
    if not ticket.endswith(".json"):
        raise r.fail("ticket", f"expected a .json path, got {ticket!r}")
    return Search(
        dataset=r.text("dataset", required=True, choices=catalog.CLASSIFICATION_DATASETS),
        model=_model(r, r.text("model", required=True)),
        ticket=ticket,
        preset=r.text("preset"),
        seed=r.int("seed"),
        strategy=r.text("strategy", choices=catalog.STRATEGIES),
        data_root=r.text("data_root"),
        flags=r.flags(),
        gpus=r.int("gpus"),
    )


def _model(r: _Reader, name: str) -> str:
    try:
        catalog.check_model(name)
    except ValueError as e:
        raise r.fail("model", str(e)) from None
    return name


def _pretraining(r: _Reader) -> Pretraining:
    r.only(("dataset", "preset", "train_limit", "data_root", "flags", "gpus"))
    return Pretraining(
        dataset=r.text("dataset", required=True, choices=catalog.CLASSIFICATION_DATASETS),
        preset=r.text("preset"),
        train_limit=r.int("train_limit", low=1),
        data_root=r.text("data_root"),
        flags=r.flags(),
        gpus=r.int("gpus"),
    )


def _transfers(top: _Reader) -> list[Transfer]:
    tables = top.get("transfer", list, [])
    out = []
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            raise top.fail(f"transfer[{i}]", "expected a table ([[transfer]])")
        r = _Reader(top.source, table, f"transfer[{i}].", top.out)
        r.only(("task", "datasets", "decoders", "opt", "data_root", "flags", "gpus"))
        tasks = catalog.tasks()
        task = r.text("task", required=True, choices=tuple(tasks))
        datasets = r.texts("datasets", tasks[task], choices=tasks[task], nonempty=True)
        decoders: tuple[str | None, ...] = (None,)
        if "decoders" in table:
            if task != "segmentation":
                raise r.fail("decoders", f"only segmentation has decoders, not {task}")
            decoders = r.texts("decoders", choices=catalog.DECODERS, nonempty=True)
        opt, root, flags = r.flags("opt"), r.text("data_root"), r.flags()
        out.append(Transfer(task, datasets, decoders, opt, root, flags, r.int("gpus")))
    return out


def _leaderboard(r: _Reader) -> Leaderboard:
    r.only(("format", "plot", "task", "dataset", "ticket", "tolerance"))
    return Leaderboard(
        format=r.text("format", "md", choices=catalog.FORMATS),
        plot=r.get("plot", bool, False),
        task=r.text("task"),
        dataset=r.text("dataset"),
        ticket=r.text("ticket"),
        tolerance=r.number("tolerance", low=0.0),
    )


def _launcher(r: _Reader) -> Launcher:
    r.only(
        (
            "name",
            "jobs",
            "retries",
            "partition",
            "gpus_per_job",
            "cpus_per_job",
            "time",
            "mem",
            "account",
            "sbatch",
        )
    )
    sbatch = r.texts("sbatch")
    for i, line in enumerate(sbatch):
        if not line.startswith("--"):
            raise r.fail(f"sbatch[{i}]", f"expected an sbatch option like --qos=high, got {line!r}")
    return Launcher(
        name=r.text("name", "local", choices=LAUNCHERS),
        jobs=r.int("jobs", low=1),
        retries=r.int("retries", 3),
        partition=r.text("partition"),
        gpus_per_job=r.int("gpus_per_job", 0),
        cpus_per_job=r.int("cpus_per_job", low=1),
        time=r.int("time", low=1),
        mem=r.text("mem"),
        account=r.text("account"),
        sbatch=sbatch,
    )
