"""Candidate evaluation and search: (d) evaluations per second vs plain forward passes of
the same networks on the same images, and evaluations each strategy needs to reach the true
top 1% of a space scored exhaustively; growth of the search's wall time with depth.

The embedded default: Fashion-MNIST, resnet20-se, the short preset's supernet (trained once
into the report root's supernets/ and reused, as is its exhaustive table) and its held-out
scoring subset. Evaluator sides score a stream of masks from an empty stage cache: "before"
without shared work (the evaluator as it was), "evaluator" with it (the default,
bit-identical scores), "fast" adding folded BN and channels_last (opt-in); "plain" runs each
mask's materialized network (built before timing) over the same images. Streams: the first
masks in exhaustive (lexicographic) order, and every mask a whole REINFORCE search (seed 0,
the short preset's budget of 60) asks for, in its order; from an empty cache, as a search
starts.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from bench.engine.checkpoint import load_model_weights
from bench.models.resnet import ModelConfig, SlotResNet
from bench.models.slots import build_supernet, materialize
from bench.search.budget import Budget
from bench.search.evaluator import (
    Evaluator,
    Mask,
    SupernetScorer,
    TableScorer,
    fixed_subset,
    mask_key,
)
from bench.search.hparams import SearchHParams, resolve_preset
from bench.search.loop import search_loop
from bench.search.reward import Reward
from bench.search.scoring_set import PreloadedSet
from bench.search.strategies import STRATEGIES, SearchContext
from bench.search.strategies.base import derived_seed
from bench.search.supernet import SupernetRun, train_supernet
from bench.ticket.schema import stage_sizes
from bench.util.fingerprint import file_sha256, value_sha256
from bench.util.io import atomic_write_json, read_json
from benchmarks.harness import Metric, Session, Target, ratio

DATASET, CONFIG = "fashion-mnist", ModelConfig("resnet20", "se")
GROWTH_BACKBONES = ("resnet20", "resnet56", "resnet110", "resnet164")


@dataclass(frozen=True)
class Sizes:
    stream: int  # masks of the exhaustive-order stream (the search's: every mask it asks)
    images: int  # scoring images per evaluation in the throughput streams
    seeds: int  # strategy seeds on the exhaustive table
    budget: int  # evaluations per strategy run
    growth_images: int
    growth_budget: int
    growth_backbones: tuple[str, ...] = GROWTH_BACKBONES


SIZES = {
    "default": Sizes(16, 25, 10, 60, 16, 3),
    "full": Sizes(64, 500, 10, 60, 64, 6),
    "quick": Sizes(3, 20, 2, 12, 8, 3, ("resnet20", "resnet32")),
}
QUICK = {  # the test-scale preset (tests/fixtures_search.py TINY)
    "supernet": {"epochs": 1, "batch_size": 32},
    "sampler": {"train_size": 300},
    "search": {"eval_subset": 100, "eval_batch_size": 50},
}


def trained_supernet(s: Session) -> tuple[SupernetRun, SlotResNet, Subset, SearchHParams]:
    """The short preset's supernet (trained or reused: its run and network), its scoring
    subset and search hparams."""
    from bench.data.datasets import load_splits

    preset = resolve_preset("short", DATASET, **(QUICK if s.quick else {}))
    splits = load_splits(DATASET, s.data_root, image_size=16 if s.quick else None)
    sup = train_supernet(
        CONFIG, splits.train, splits.info, splits.num_classes, preset.supernet, preset.sampler,
        s.cache / "supernets", "cpu", log=lambda _m: None, progress=False,
    )  # fmt: skip
    assert sup is not None
    net = build_supernet(CONFIG, num_classes=splits.num_classes)
    load_model_weights(net, sup.weights)
    hp = preset.search
    idx = fixed_subset(len(splits.heldout), hp.eval_subset, derived_seed(0, "scoring"))
    return sup, net.eval(), Subset(splits.heldout, idx.tolist()), hp


def all_masks(n: int) -> list[Mask]:
    return [tuple(int(b) for b in format(i, f"0{n}b")) for i in range(2**n)]


def blocks_skipped(stream: Sequence[Mask]) -> float:
    """Share of blocks an unbounded block cache lets the stream skip (longest shared
    prefix with any earlier mask)."""
    skipped = 0
    for i, m in enumerate(stream):
        common = [next((k for k, (a, b) in enumerate(zip(m, p)) if a != b), len(m))
                  for p in stream[:i]]  # fmt: skip
        skipped += max(common, default=0)
    return skipped / (len(stream) * len(stream[0]))


def run_strategy(name: str, seed: int, table: dict[str, float], size: int, hp: SearchHParams,
                 reward: Reward, n: int, record: list | None = None) -> Any:  # fmt: skip
    """One search of `name` on the table (a TableScorer replays the real scores)."""
    scorer: Any = TableScorer(table, size=size)
    if record is not None:
        scorer = _Recording(scorer, record, size)
    ev = Evaluator(scorer, Budget(hp.budget, size))
    ctx = SearchContext(n, stage_sizes(CONFIG.spec.slot_ids), hp, seed, known=ev.known)
    with tempfile.TemporaryDirectory() as d:
        return search_loop(STRATEGIES.get(name)(ctx), ev, reward, hp, d, log=lambda _m: None,
                           progress=False, checkpoint_every=10**9)  # fmt: skip


class _Recording:
    """A score function that records the masks it is asked to score."""

    def __init__(self, fn: Any, record: list, size: int) -> None:
        self.fn, self.record, self.size = fn, record, size

    def __call__(self, mask: Mask, n_images: int) -> Any:
        self.record.append(tuple(mask))
        return self.fn(mask, n_images)


def throughput(s: Session, case: str, net: SlotResNet, scoring: Dataset,
               hp: SearchHParams, stream: list[Mask], images: int) -> None:  # fmt: skip
    """Evaluator sides (module docstring) vs plain forwards of each materialized network."""
    kw = {"batch_size": hp.eval_batch_size}
    scorers = {
        "before": SupernetScorer(net, scoring, "cpu", cache_mb=0, **kw),
        "evaluator": SupernetScorer(net, scoring, "cpu", **kw),
        "fast": SupernetScorer(net, scoring, "cpu", fast=True, **kw),
    }
    source = scorers["before"].source
    assert isinstance(source, PreloadedSet)
    x = source.x
    plain_nets = [materialize(net, m).eval() for m in stream]

    def plain() -> None:
        with torch.inference_mode():
            for p in plain_nets:
                for a in range(0, images, hp.eval_batch_size):
                    p(x[a : min(a + hp.eval_batch_size, images)])

    def scored(sc: SupernetScorer) -> None:
        sc.clear_cache()
        for m in stream:
            sc(m, images)

    sides: dict[str, Any] = {"plain": plain}
    sides.update({k: (lambda sc=sc: scored(sc)) for k, sc in scorers.items()})
    info = {"masks": len(stream), "images": images, "blocks_skipped": blocks_skipped(stream)}
    s.compare(case, sides, [
        ratio("before / plain", "before", "plain"),
        ratio("evaluator / plain", "evaluator", "plain", Target(lo=1.5)),
        ratio("fast / plain", "fast", "plain", Target(lo=1.5)),
    ], info=info)  # fmt: skip


def strategies(s: Session, table: dict[str, float], size: int, search_hp: SearchHParams,
               reward: Reward, sizes: Sizes, n: int) -> None:  # fmt: skip
    """Evaluations until each strategy's best-so-far reward reaches the true top 1%."""
    rewards = sorted((reward(tuple(int(b) for b in k), v) for k, v in table.items()), reverse=True)
    top = max(1, math.ceil(0.01 * len(rewards)))
    target, best = rewards[top - 1], rewards[0]
    rows = []
    for name in STRATEGIES:
        reach, ranks = [], []
        for seed in range(sizes.seeds):
            res = run_strategy(name, seed, table, size, search_hp, reward, n)
            finals = [e for e in res.episodes if e["final"]]
            hit = next((e["spent"] for e in finals if e["reward"] >= target - 1e-9), None)
            reach.append(hit)
            ranks.append(1 + sum(r > res.best["reward"] + 1e-9 for r in rewards))
        got = sorted(v for v in reach if v is not None)
        rows.append([name, f"{len(got)}/{sizes.seeds}",
                     _median(got), f"{got[0]:g} to {got[-1]:g}" if got else "-",
                     _median(sorted(ranks))])  # fmt: skip
    s.table(
        f"Evaluations to reach the true top 1% ({top} of {len(rewards)} masks, reward >= "
        f"{target:.3f}; best {best:.3f}), budget {sizes.budget}, seeds 0-{sizes.seeds - 1}",
        ["strategy", "reached", "median evaluations", "range", "median final rank"],
        rows,
    )


def _median(v: Sequence[float]) -> float | None:
    return float(statistics.median(v)) if v else None


def exhaustive(s: Session, sup: SupernetRun, net: SlotResNet, scoring: Subset,
               hp: SearchHParams) -> dict[str, float]:  # fmt: skip
    """Every mask scored once by the default evaluator, in lexicographic order. Kept beside
    the supernet, keyed by its weights, the scoring images, the batch size and torch, so the
    run's later processes and later runs read the table instead of scoring it again."""
    key = value_sha256({"weights": file_sha256(sup.weights), "images": list(scoring.indices),
                        "batch": hp.eval_batch_size, "torch": torch.__version__}, 16)  # fmt: skip
    path = sup.path / f"exhaustive-{key}.json"
    if path.is_file():
        made = read_json(path)
        s.note(f"exhaustive: {made['note']} (when first made; read from {path})")
        return made["table"]
    scorer = SupernetScorer(net, scoring, "cpu", batch_size=hp.eval_batch_size)
    n = len(net.slot_ids)
    t0 = time.perf_counter()
    table = {mask_key(m): scorer(m, scorer.size).top1 for m in all_masks(n)}
    total = 2**n * n * math.ceil(scorer.size / scorer.batch_size)  # block runs without sharing
    note = (f"all {2**n} masks scored on {scorer.size} images in "
            f"{time.perf_counter() - t0:.1f} s; shared work skipped {scorer.blocks_skipped} "
            f"of {total} block runs")  # fmt: skip
    atomic_write_json(path, {"note": note, "table": table})
    s.note(f"exhaustive: {note}")
    return table


def growth(s: Session, sizes: Sizes) -> None:
    """Search wall time (scorer, strategy, loop) vs depth at a fixed budget."""
    from bench.report.plots import save_figure

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(sizes.growth_images, 3, 32, 32, generator=g),
                         torch.randint(0, 10, (sizes.growth_images,), generator=g))  # fmt: skip
    nets = {b: _calibrated(b, data) for b in sizes.growth_backbones}
    base = SearchHParams().replace(budget=sizes.growth_budget, steps=1, samples_per_step=3,
                                   eval_batch_size=sizes.growth_images)  # fmt: skip
    sides = {b: (lambda net=net: _search_once(net, data, base)) for b, net in nets.items()}
    first = sizes.growth_backbones[0]
    comp = s.compare(
        f"search wall time, budget {sizes.growth_budget} x {sizes.growth_images} images",
        sides,
        [Metric(f"{b} / {first} time", lambda t, b=b: t[b] / t[first]) for b in nets if b != first],
    )
    rows = [[b, len(net.slot_ids), comp.sides[b].median, comp.sides[b].interval]
            for b, net in nets.items()]  # fmt: skip
    s.table("Search wall time vs blocks (reinforce, SE supernet, s per search)",
            ["backbone", "blocks", "median s", "95% CI"], rows)  # fmt: skip
    s.files += [str(p) for p in save_figure(_growth_figure(rows), s.out / "search_growth")]


def _calibrated(backbone: str, data: TensorDataset) -> SlotResNet:
    """A random-weight SE supernet whose BN statistics come from the scoring images."""
    torch.manual_seed(0)
    net = build_supernet(ModelConfig(backbone, "se"), num_classes=10).train()
    with torch.no_grad():
        net(data.tensors[0])
    return net.eval()


def _search_once(net: SlotResNet, data: Dataset, hp: SearchHParams) -> None:
    scorer = SupernetScorer(net, data, "cpu", batch_size=hp.eval_batch_size)
    ev = Evaluator(scorer, Budget(hp.budget, scorer.size))
    ctx = SearchContext(len(net.slot_ids), stage_sizes(net.slot_ids), hp, 0, known=ev.known)
    with tempfile.TemporaryDirectory() as d:
        search_loop(STRATEGIES.get("reinforce")(ctx), ev, Reward(hp.reward_offset,
                    hp.sparsity_weight), hp, d, log=lambda _m: None, progress=False)  # fmt: skip


def _growth_figure(rows: list[list[Any]]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([r[1] for r in rows], [r[2] for r in rows], "o-")
    for r in rows:
        ax.annotate(r[0], (r[1], r[2]), fontsize=7)
    ax.set(xlabel="residual blocks (SAM slots)", ylabel="search wall time (s)",
           title="Search wall time at a fixed budget")  # fmt: skip
    return fig


def run(s: Session) -> None:
    sizes = s.pick(SIZES)
    sup, net, scoring, hp = trained_supernet(s)
    n = len(net.slot_ids)
    table = exhaustive(s, sup, net, scoring, hp)
    size = len(scoring)
    lex = all_masks(n)[: sizes.stream]
    asked: list[Mask] = []
    reward = Reward(hp.reward_offset, hp.sparsity_weight)
    rl_hp = hp.replace(budget=sizes.budget, steps=-(-sizes.budget // hp.samples_per_step))
    run_strategy("reinforce", 0, table, size, rl_hp, reward, n, record=asked)
    for case, stream in (("exhaustive order", lex), ("reinforce search", asked)):
        throughput(s, f"{case}, {len(stream)} masks", net, scoring, hp, stream, sizes.images)
    strategies(s, table, size, rl_hp, reward, sizes, n)
    growth(s, sizes)
