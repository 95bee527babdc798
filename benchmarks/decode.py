"""Decode once: (e) candidate scoring on an ImageNet-format folder at 224 px, every JPEG
decoded per candidate (the scorer's streamed path) vs read from the decode-once uint8
cache (bench.data.decoded), side by side.

The folder: real pictures (the test fixtures' ImageNet samples) saved as JPEGs of about
ImageNet's median size (500 x 375), eval transform Resize 256 + CenterCrop 224, one
process (no DataLoader workers on either side). "input path" times what a candidate costs
besides the network (every batch of the scoring set, normalised, on the device): what a
GPU waits for. "whole candidate" adds a resnet18-se supernet's forward passes: on this
CPU the forward dominates both sides, so it shows how little of a CPU candidate the
decoding is. The cache is built (and checked bit-equal to decoding) before timing.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.data.datasets import SplitView, load_splits
from bench.data.decoded import decoded_set
from bench.data.imagefolder import ImageFiles
from bench.models.resnet import ModelConfig
from bench.models.slots import build_supernet
from bench.search.evaluator import SupernetScorer
from bench.search.scoring_set import CachedSet, StreamedSet
from benchmarks.harness import Session, Target, ratio

ROOT = Path(__file__).resolve().parents[1]
IMAGE = (500, 375)  # ImageNet's typical photo: 500 px wide
MASKS = [(1, 0) * 4, (0, 1) * 4]


@dataclass(frozen=True)
class Sizes:
    per_class: int  # held-out images per class (4 classes)
    batch: int


SIZES = {"quick": Sizes(2, 4), "default": Sizes(12, 16), "full": Sizes(50, 50)}


def image_folder(where: Path, per_class: int) -> Path:
    """An ImageNet-format folder of real JPEGs (tests/fixtures.py), written once."""
    root = where / f"imagenet-{IMAGE[0]}x{IMAGE[1]}-{per_class}"
    if root.is_dir():
        return root
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    fixtures = importlib.import_module("fixtures")
    where.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".imagenet-", dir=where))
    try:
        fixtures.write_imagefolder(tmp, classes=4, train_per_class=per_class + 2,
                                   val_per_class=1, size=IMAGE)  # fmt: skip
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def views(s: Session, sizes: Sizes) -> tuple[SplitView, SplitView]:
    """The held-out view twice: read by decoding, and through the cache folder."""
    root = image_folder(s.cache / "decode", sizes.per_class)
    held = load_splits("imagenet", root, heldout=f"{sizes.per_class}/class",
                       cache_dir=s.cache / "decode" / "cache").heldout  # fmt: skip
    plain = SplitView(ImageFiles(str(root / "train")), held.indices, held.transform)
    return plain, held


def _drain(source: Any, n: int) -> None:
    for _ in source.batches(n):
        pass


def run(s: Session) -> None:
    sizes = s.pick(SIZES)
    plain, held = views(s, sizes)
    n, cpu = len(held), torch.device("cpu")
    decoded = decoded_set(held, log=s.note)
    assert decoded is not None
    streamed, cached = StreamedSet(plain, sizes.batch, 0, cpu), CachedSet(decoded, sizes.batch, cpu)
    same = all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
               for a, b in zip(streamed.batches(n), cached.batches(n)))  # fmt: skip
    info = {"images": n, "batch": sizes.batch, "px": 224, "bit_equal": same}
    s.compare(
        f"input path, {n} images",
        {"decode": lambda: _drain(streamed, n), "cache": lambda: _drain(cached, n)},
        [ratio("cache / decode", "cache", "decode", Target(lo=5.0))],
        info=info,
    )
    torch.manual_seed(0)
    net = build_supernet(ModelConfig("resnet18", "se"), num_classes=4).eval()
    kw = {"batch_size": sizes.batch, "preload_mb": 0}
    scorers = {"decode": SupernetScorer(net, plain, "cpu", **kw),
               "cache": SupernetScorer(net, held, "cpu", **kw)}  # fmt: skip
    scores = {k: [sc(m, n) for m in MASKS] for k, sc in scorers.items()}
    info = {**info, "masks": len(MASKS), "model": "resnet18-se",
            "equal_scores": scores["decode"] == scores["cache"]}  # fmt: skip

    def candidates(sc: SupernetScorer) -> None:
        for m in MASKS:
            sc(m, n)

    s.compare(
        f"whole candidate (resnet18-se), {len(MASKS)} masks x {n} images",
        {k: (lambda sc=sc: candidates(sc)) for k, sc in scorers.items()},
        [ratio("cache / decode", "cache", "decode")],
        info=info,
    )
