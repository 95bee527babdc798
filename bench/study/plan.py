"""The plan of a study: its cells, each one exact `bench ...` command line, and their order.

data (embedded samples) -> search -> pretraining of each ticket x seed (`bench train` of the
ticket beside its controls) -> each transfer cell (ticket x task x dataset x decoder x seed,
every arm) -> the leaderboard. Every command is parsed by bench's own parser and checked by
its command's own checks when the plan is made, so a bad flag in the study file is refused
before anything runs; nothing here reads a dataset.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.study.schema import Scalar, Study, Transfer
from bench.util.errors import BenchError

KINDS = ("data", "search", "train", "transfer", "leaderboard")


@dataclass(frozen=True)
class Match:
    """How a cell's run directories are found among <out>/*/hparams.json (run directory
    names hash the held-out split, which the plan cannot know without the data)."""

    arms: tuple[str, ...]  # ticket checksums of the arms (one run directory each)
    identity: dict[str, Any]  # identity fields every one of them has
    seed: int
    hparams: dict[str, Any] | None = None  # the full hparams, where the plan knows them


@dataclass(frozen=True)
class Cell:
    """One unit of work: one `bench` command line."""

    id: str
    kind: str
    argv: tuple[str, ...]  # starts with "bench"
    deps: tuple[str, ...] = ()
    match: Match | None = None  # None: no run directories known before a dependency ran
    work: int | None = None  # images processed (epochs x images, every arm); None: unknown
    gpus: int = 0  # > 1: the job runs the command under torchrun

    @property
    def command(self) -> str:
        """The command as a shell line, under torchrun for a multi-GPU cell."""
        return shlex.join(launch_argv(self, "bench"))


@dataclass(frozen=True)
class Plan:
    study: Study
    cells: tuple[Cell, ...]
    notes: tuple[str, ...] = ()  # what the plan left out, and why
    by_id: dict[str, Cell] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id.update({c.id: c for c in self.cells})

    def dependents(self, cell_id: str) -> list[str]:
        """Every cell that needs `cell_id`, directly or not, in plan order."""
        hit = {cell_id}
        for c in self.cells:
            if hit.intersection(c.deps):
                hit.add(c.id)
        return [c.id for c in self.cells if c.id in hit and c.id != cell_id]


def launch_argv(cell: Cell, bench: str, torchrun: str = "torchrun") -> list[str]:
    """The argv a job runs: `bench` as given; for several GPUs, bench's module under
    torchrun (one process per GPU)."""
    if cell.gpus > 1 and cell.kind in ("search", "train", "transfer"):
        run = [torchrun, "--standalone", f"--nproc-per-node={cell.gpus}", "-m", "bench.cli.main"]
        return [*run, *cell.argv[1:]]
    return [bench, *cell.argv[1:]]


def flag_args(flags: Mapping[str, Scalar]) -> list[str]:
    """{batch_size: 32, plot: true} -> ["--batch-size", "32", "--plot"] (false: left out)."""
    out: list[str] = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False:
            out += [flag, str(value)]
    return out


def _opt(flag: str, value: Any) -> list[str]:
    return [] if value is None else [flag, str(value)]


def parse_command(argv: Sequence[str], where: str) -> argparse.Namespace:
    """`argv` ("bench", COMMAND, ...) parsed by bench's own parser; BenchError naming
    `where` and the parser's one-line complaint."""
    from bench.cli.main import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser(argv[1]).parse_args(list(argv[1:]))
    except SystemExit:
        said = err.getvalue().strip().splitlines()
        msg = said[-1].removeprefix("bench: error: ") if said else "refused"
        raise BenchError(f"{where}: {msg}") from None


def _checked(argv: Sequence[str], where: str, check: str | None) -> Any:
    """Parse `argv` and run its command's own cheap checks (`module:function`)."""
    args = parse_command(argv, where)
    if check is None:
        return args, None
    module, name = check.split(":")
    try:
        return args, getattr(importlib.import_module(module), name)(args)
    except BenchError as e:
        raise BenchError(f"{where}: {e}") from None


def build_plan(study: Study) -> Plan:
    """Every cell of `study`, checked; BenchError (one line) on the first bad one."""
    from bench.study.tickets import study_tickets

    out, cells, notes = str(study.out), [], []
    if study.samples:
        cells.append(Cell("data", "data", ("bench", "demo", "--data-only", "--out", out)))
    search_id = None
    if study.search is not None:
        search_id = "search"
        cells.append(_search_cell(study, _data_dep(study, study.search.data_root)))
    for ref in study_tickets(study):
        deps = [search_id] if ref.made_by_search and search_id else []
        train_ids: dict[int, list[str]] = {}
        if study.pretraining is not None:
            pre = [*_data_dep(study, study.pretraining.data_root), *deps]
            for seed in study.seeds:
                arms = _train_cells(study, ref, seed, pre)
                cells += arms
                train_ids[seed] = [c.id for c in arms]
        cells += _transfer_cells(study, ref, train_ids, deps, notes)
    lb_deps = [c.id for c in cells]
    cells.append(_leaderboard_cell(study, lb_deps))
    return Plan(study, tuple(cells), tuple(notes))


def _transfer_cells(study: Study, ref: Any, train_ids: dict[int, list[str]], deps: list[str],
                    notes: list[str]) -> list[Cell]:  # fmt: skip
    """Each transfer cell of one ticket: task x dataset x decoder x seed, after the
    pretraining of its seed (or what makes the ticket, when there is no pretraining)."""
    cells = []
    for i, tr in enumerate(study.transfer):
        for dataset in tr.datasets:
            if study.pretraining is not None and dataset == study.pretraining.dataset:
                notes.append(f"transfer[{i}]: {tr.task}/{dataset} is the pretraining dataset "
                             "itself: its `bench train` records are the result")  # fmt: skip
                continue
            for decoder in tr.decoders:
                for seed in study.seeds:
                    need = train_ids[seed] if seed in train_ids else deps
                    need = [*_data_dep(study, tr.data_root), *need]
                    cells.append(_transfer_cell(study, ref, i, tr, dataset, decoder, seed, need))
    return cells


def _data_dep(study: Study, data_root: str | None) -> list[str]:
    """["data"] when the step reads the samples the data cell writes into {out}/data."""
    root = data_root if data_root is not None else study.data_root
    wrote = study.samples and root is not None and Path(root) == study.out / "data"
    return ["data"] if wrote else []


def _gpus(study: Study, gpus: int | None) -> int:
    """GPUs per job of a cell: its table's `gpus`, else the launcher's gpus_per_job."""
    return study.launcher.gpus_per_job if gpus is None else gpus


def _common(study: Study, data_root: str | None) -> list[str]:
    root = data_root if data_root is not None else study.data_root
    argv = _opt("--data-root", root) + ["--out", str(study.out)]
    return argv + ([] if study.device == "cpu" else ["--device", study.device])


def _search_cell(study: Study, deps: list[str]) -> Cell:
    from bench.study.work import search_work

    s = study.search
    assert s is not None
    argv = [
        "bench",
        "search",
        s.dataset,
        s.model,
        *_opt("--preset", s.preset),
        *_opt("--seeds", s.seed),
        *_opt("--strategy", s.strategy),
        "--save-ticket",
        s.ticket,
        *_common(study, s.data_root),
        *flag_args(s.flags),
    ]
    args, settings = _checked(argv, f"{study.path}: search", "bench.cli.commands.search:check")
    return Cell(
        "search",
        "search",
        tuple(argv),
        tuple(deps),
        work=search_work(args),
        gpus=_gpus(study, s.gpus),
    )


def _arms(ref: Any, seed: int, controls: Sequence[str], unique: bool = True) -> tuple[str, ...]:
    """Checksums of the ticket and its controls for `seed`, in that order (unique: once each,
    as a control equal to the ticket is the ticket's run)."""
    from bench.ticket.schema import control_tickets

    if ref.ticket is None:
        return ()
    sums = [ref.ticket.checksum, *(t.checksum for t in control_tickets(ref.ticket, seed, controls))]
    return tuple(dict.fromkeys(sums)) if unique else tuple(sums)


def _train_cells(study: Study, ref: Any, seed: int, deps: list[str]) -> list[Cell]:
    """One `bench train --arm ARM` cell per arm of `seed` (the ticket and each control), so
    the arms train at once; a control that is the ticket's network is the ticket's cell."""
    from bench.runs.classify import with_seed
    from bench.study.work import train_work

    p = study.pretraining
    assert p is not None
    controls = ["--controls", ",".join(study.controls)] if study.controls else []
    head = ["bench", "train", p.dataset, ref.model, "--ticket", ref.arg, *controls]
    tail = [
        "--seeds",
        str(seed),
        *_opt("--preset", p.preset),
        *_opt("--train-limit", p.train_limit),
        *_common(study, p.data_root),
        *flag_args(p.flags),
    ]
    arms = ("ticket", *study.controls)

    def argv(arm: str) -> tuple[str, ...]:
        return (*head, *(["--arm", arm] if study.controls else []), *tail)

    # The arms' commands differ only in --arm: one parse and check gives every arm's hparams.
    args, (_, base) = _checked(argv(arms[0]), f"{study.path}: pretraining",
                               "bench.cli.commands.train:check")  # fmt: skip
    hp = with_seed(base, seed, args.epochs)
    ident = {
        "task": "classification",
        "dataset": p.dataset,
        "train_limit": p.train_limit,
        "image_size": args.image_size,
    }
    sums = _arms(ref, seed, study.controls, unique=False)
    cells = []
    for k, arm in enumerate(arms):
        if sums and sums.index(sums[k]) < k:
            continue  # the same network as an earlier arm: that arm's run
        match = Match((sums[k],), ident, seed, _plain(hp.to_dict())) if sums else None
        name = f"train/{ref.label}/s{seed}" + (f"/{arm}" if study.controls else "")
        work = train_work(args, hp, 1)
        cells.append(Cell(name, "train", argv(arm), tuple(deps), match, work, _gpus(study, p.gpus)))
    return cells


def _transfer_cell(
    study: Study,
    ref: Any,
    i: int,
    tr: Transfer,
    dataset: str,
    decoder: str | None,
    seed: int,
    deps: list[str],
) -> Cell:
    from bench.study.work import transfer_work

    check = "bench.cli.commands.transfer:check"
    p = study.pretraining
    arms = ["--controls", ",".join(study.controls)] if study.controls else ["--no-controls"]
    opts = [a for k, v in tr.opt.items() for a in ("--opt", f"{k}={_text(v)}")]
    argv = [
        "bench",
        "transfer",
        "--ticket",
        ref.arg,
        "--task",
        tr.task,
        "--dataset",
        dataset,
        *_opt("--decoder", decoder),
        *arms,
        "--seeds",
        str(seed),
        "--pretrained",
        p.dataset if p is not None else "none",
        *_opt("--pretrained-preset", p.preset if p is not None else None),
        *opts,
        *_common(study, tr.data_root),
        *flag_args(tr.flags),
    ]
    args, options = _checked(argv, f"{study.path}: transfer[{i}]", check)
    sample, gpus = bool(_data_dep(study, tr.data_root)), _gpus(study, tr.gpus)
    try:
        work = transfer_work(args, options.get(tr.task, {}), sample, gpus)
    except BenchError as e:
        raise BenchError(f"{study.path}: transfer[{i}]: {e}") from None
    sums = _arms(ref, seed, study.controls)
    ident: dict[str, Any] = {"task": tr.task, "dataset": dataset}
    match = Match(sums, ident, seed) if sums else None
    name = f"transfer/{ref.label}/{tr.task}/{dataset}" + (f"/{decoder}" if decoder else "")
    return Cell(
        f"{name}/s{seed}",
        "transfer",
        tuple(argv),
        tuple(deps),
        match,
        None if work is None else work * (1 + len(study.controls)),
        gpus,
    )


def _leaderboard_cell(study: Study, deps: list[str]) -> Cell:
    lb = study.leaderboard
    argv = [
        "bench",
        "leaderboard",
        "--out",
        str(study.out),
        "--format",
        lb.format,
        *(["--plot"] if lb.plot else []),
        *_opt("--task", lb.task),
        *_opt("--dataset", lb.dataset),
        *_opt("--ticket", lb.ticket),
        *_opt("--tolerance", None if lb.tolerance is None else f"{lb.tolerance:g}"),
    ]
    _checked(argv, f"{study.path}: leaderboard", None)
    return Cell("leaderboard", "leaderboard", tuple(argv), tuple(deps))


def _text(value: Scalar) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples as lists), as hparams.json holds it."""
    import json

    return json.loads(json.dumps(value))
