"""A cell's work in images processed (epochs x images, every arm), from the hparams its
command resolves to (the commands' own code) and the datasets' official split sizes; a
transfer cell's from its task's `work` hook.

The plan reads no data, so the image counts are the official datasets': the train split
minus the protocol's held-out split (or --heldout), cut to --train-limit. A data folder that
differs from the official release (a sample, a subset) trains on what it holds.
"""

from __future__ import annotations

import argparse
from typing import Any

# dataset -> (official train images, classes, the protocol's held-out split); tests keep
# these equal to bench.data.datasets.
TRAIN_SPLITS: dict[str, tuple[int, int, str]] = {
    "fashion-mnist": (60_000, 10, "5000"),
    "cifar10": (50_000, 10, "5000"),
    "cifar100": (50_000, 100, "5000"),
    "imagenet": (1_281_167, 1000, "100/class"),
}


def train_images(dataset: str, heldout: int | str | None, limit: int | None) -> int | None:
    """Images one epoch of `bench train` sees: train minus held-out, at most `limit`."""
    if dataset not in TRAIN_SPLITS:
        return limit
    total, classes, rule = TRAIN_SPLITS[dataset]
    text = str(rule if heldout is None else heldout).replace(" ", "")
    held = int(text.split("/")[0]) * (classes if text.endswith("/class") else 1)
    keep = max(total - held, 0)
    return keep if limit is None else min(limit, keep)


def train_work(args: argparse.Namespace, hp: Any, arms: int) -> int | None:
    """Epochs x images of every arm of one `bench train` seed."""
    images = train_images(args.dataset, args.heldout, args.train_limit)
    return None if images is None else hp.epochs * images * arms


def transfer_work(
    args: argparse.Namespace, options: dict[str, Any], sample: bool, gpus: int
) -> int | None:
    """Images one arm of a `bench transfer` cell trains on: the task's own `work` hook
    (bench.runs.task_options.WorkQuery), None where the task declares none."""
    from pathlib import Path

    from bench.runs.task_options import WorkQuery, task_options

    hook = task_options(args.task).work
    if hook is None or args.dataset is None:
        return None
    root = None if args.data_root is None else Path(args.data_root)
    q = WorkQuery(args.dataset, options, args.epochs, args.iters, root, sample, max(gpus, 1))
    return hook(q)


def search_work(args: argparse.Namespace) -> int | None:
    """The supernet's epochs x its training images, plus every candidate evaluation on the
    scoring subset (the search's budget; a search seed shares its supernet with others)."""
    from bench.cli.commands.search import resolve_args

    setup = resolve_args(args)[0]
    p = setup.preset
    images = train_images(args.dataset, args.heldout, None)
    if images is None:
        return None
    if p.sampler.train_size:
        images = min(images, p.sampler.train_size)
    scoring = p.search.eval_subset or _heldout_size(args.dataset, args.heldout)
    return p.supernet.epochs * images + p.search.budget * scoring


def _heldout_size(dataset: str, heldout: int | str | None) -> int:
    total = TRAIN_SPLITS[dataset][0]
    return total - (train_images(dataset, heldout, None) or 0)
