"""`bench list`: what exists, printed from the registries and dataclasses the code runs on."""

from __future__ import annotations

import argparse
import logging
import shutil
import textwrap
from collections.abc import Sequence

from bench.cli import catalog
from bench.cli.args import TICKET_DIR
from bench.util.errors import BenchError

_log = logging.getLogger(__name__)

HELP = (
    "List what exists: models (<backbone>-<sam>), SAMs with their options, shipped tickets, "
    "datasets and where they are read from, training and search presets, tasks, and each "
    "task's --opt options with their type, default and help."
)
EXAMPLE = """bench list models 'resnet5*-s*'
bench list presets
bench list options crowd_counting"""
WHAT = ("models", "sams", "tickets", "datasets", "presets", "tasks", "options")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=WHAT)
    p.add_argument(
        "pattern", nargs="?", default="*", help="a glob on the names; for options: a task name"
    )


def run(args: argparse.Namespace) -> None:
    {
        "models": _models,
        "sams": _sams,
        "tickets": _tickets,
        "datasets": _datasets,
        "presets": _presets,
        "tasks": _tasks,
        "options": _options,
    }[args.what](args.pattern)


def table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell; the last column wraps under itself."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    start = len(indent) + sum(w + 2 for w in widths)
    width = max(shutil.get_terminal_size((100, 24)).columns, start + 40)
    lines = []
    for row in rows:
        head = indent + "".join(f"{cell:<{w}}  " for cell, w in zip(row, widths))
        wrapped = textwrap.wrap(row[-1], width - start, break_on_hyphens=False) or [""]
        lines.append(head + wrapped[0])
        lines += [" " * start + more for more in wrapped[1:]]
    return lines


def _models(pattern: str) -> None:
    from bench.models.resnet import BACKBONES, list_model_names

    names = list_model_names(pattern)
    print("\n".join(names))
    note = f"# {len(names)} models: <backbone>[-<sam>]; backbones: {', '.join(BACKBONES.list())}"
    _log.info(note)


def _sams(pattern: str) -> None:
    from bench.models.sams import SAMS, describe_sam, sam_defaults

    for name in SAMS.list(pattern):
        opts = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in sam_defaults(name).items())  # fmt: skip
        print(f"{name:<8} {describe_sam(name)}" + (f"  [{opts}]" if opts else ""))


def _tickets(pattern: str) -> None:
    from bench.ticket.schema import load_ticket

    for path in sorted(TICKET_DIR.glob(f"{pattern}.json")):
        t = load_ticket(path)
        print(
            f"{path.stem:<28} {t.model_name:<16} {t.sharing:<6} {t.stages:<24} "
            f"{t.kept}/{t.total}  {t.provenance['kind']}"
        )


def _datasets(pattern: str) -> None:
    import fnmatch

    from bench.data.datasets import DATASETS
    from bench.runs.task_options import task_names, task_options
    from bench.util.paths import ENV_DATA_ROOT

    print(f"<data-root>: --data-root, else ${ENV_DATA_ROOT}, else ./data")
    layouts = {t: task_options(t).layouts for t in task_names()}
    layouts["classification"] = {n: DATASETS.get(n).describe().split(": ", 1)[1] for n in DATASETS}
    for task, found in layouts.items():
        rows = [(n, text) for n, text in found.items() if fnmatch.fnmatchcase(n, pattern)]
        if rows:
            print(f"{task}:")
            print("\n".join(table(rows)))


def _auto_line(mapping: dict[str, str]) -> str:
    return "auto: " + ", ".join(f"{d} {p}" for d, p in mapping.items())


def _presets(pattern: str) -> None:
    from bench.engine.hparams import AUTO_PRESET as TRAIN_AUTO
    from bench.engine.hparams import PRESETS
    from bench.runs.task_options import task_names, task_options
    from bench.search.hparams import AUTO_PRESET, SEARCH_PRESETS

    print(f"training presets (bench train --preset; {_auto_line(TRAIN_AUTO)}):")
    print("\n".join(table([(n, PRESETS.get(n).summary()) for n in PRESETS.list(pattern)])))
    print(f"search presets (bench search --preset; {_auto_line(AUTO_PRESET)}):")
    rows = []
    for name in SEARCH_PRESETS.list(pattern):
        seen: dict[str, list[str]] = {}
        for dataset in catalog.CLASSIFICATION_DATASETS:
            seen.setdefault(_search_summary(SEARCH_PRESETS.get(name)(dataset)), []).append(dataset)
        for text, datasets in seen.items():
            where = "" if len(seen) == 1 else f" ({', '.join(datasets)})"
            rows.append((name + where, text))
    print("\n".join(table(rows)))
    for task in task_names():
        opts = task_options(task)
        if opts.recipes is not None:
            print(f"{opts.recipes_title}:")
            print("\n".join(table(opts.recipes(pattern))))


def _search_summary(p) -> str:
    s, space = p.search, p.space
    eval_on = f"{s.eval_subset} held-out images" if s.eval_subset else "the whole held-out split"
    train_on = f"{p.sampler.train_size} images" if p.sampler.train_size else "all of train"
    share = (
        f"one SAM per {space.sharing}, official SAM options"
        if space.sharing
        else "one SAM per block unless --sharing stage"
    )
    return (
        f"supernet {p.supernet.summary()} on {train_on}; search: {s.steps} steps x "
        f"{s.samples_per_step}, budget {s.budget} on {eval_on}; {share}; seed {p.seed}"
    )


def _tasks(pattern: str) -> None:
    from bench.runs.transfer import TASKS, load_adapters

    load_adapters()
    rows = []
    for name in TASKS.list(pattern):
        cls = TASKS.get(name)
        better = "higher" if cls.higher_is_better else "lower"
        unit = {"both": "epochs or iters"}.get(cls.budget_unit, cls.budget_unit)
        text = f"{cls.metric} ({better} is better); trains by {unit}; datasets: "
        rows.append((name, text + ", ".join(cls.datasets)))
    print("\n".join(table(rows)))
    _log.info("# options of a task: bench list options TASK")


def _options(pattern: str) -> None:
    import fnmatch

    from bench.runs.task_options import task_names, task_options

    tasks = [t for t in task_names() if fnmatch.fnmatchcase(t, pattern)]
    if not tasks:
        raise BenchError(f"no task {pattern!r} (tasks: {', '.join(task_names())})")
    width = max(shutil.get_terminal_size((100, 24)).columns, 60)
    for i, task in enumerate(tasks):
        opts = task_options(task)
        print(("\n" if i else "") + f"{task}: bench transfer --task {task} --opt KEY=VALUE")
        if opts.note:
            print(f"({opts.note})")
        title = None
        for o in opts.options().values():
            if o.group.title != title:
                title = o.group.title
                print(f"\n{title}:" if title else "")
            print(f"  {o.key} ({o.type_text}; default: {o.default})")
            print(textwrap.fill(o.help, width, initial_indent=" " * 6, subsequent_indent=" " * 6))
