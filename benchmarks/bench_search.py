"""Search benchmark (not a test): evaluator throughput, and evaluations-to-reward per strategy.

On the embedded default (Fashion-MNIST, resnet20-se, the short preset's supernet and its
500-image held-out scoring subset):

1. Throughput, measured side by side (interleaved, median of repeats): one candidate
   evaluation (SupernetScorer: set the mask, score the preloaded subset, all-reduce-ready
   sums) vs a plain forward pass of the materialized ticket network over the same tensors.
   Target: ratio >= 0.95.
2. Every one of the 2^9 masks is scored once with the real evaluator; that exhaustive table
   gives the true ranking. Each strategy then searches it under the same budget (a
   TableScorer replays the real scores, so a run costs what the real one would in
   evaluations, without re-running the network), over several seeds, and we report how
   many evaluations each needed before its best-so-far reward reached the k-th best reward.

Run: .venv/bin/python benchmarks/bench_search.py [--out DIR] [--budget 100] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from bench.cost import device_name
from bench.engine.checkpoint import load_model_weights
from bench.models.resnet import ModelConfig
from bench.models.slots import build_supernet, materialize
from bench.search.budget import Budget
from bench.search.evaluator import Evaluator, SupernetScorer, TableScorer, fixed_subset, mask_key
from bench.search.hparams import resolve_preset
from bench.search.loop import search_loop
from bench.search.reward import Reward
from bench.search.strategies import STRATEGIES, SearchContext
from bench.search.strategies.base import derived_seed
from bench.search.supernet import train_supernet
from bench.tickets import stage_sizes
from tasks.classification.datasets import load_splits

DATASET, BACKBONE, SAM = "fashion-mnist", "resnet20", "se"


def throughput(scorer: SupernetScorer, masks: list[tuple[int, ...]], repeats: int) -> dict:
    """Median seconds per candidate: evaluator vs plain forward of the materialized net."""
    assert scorer.x is not None
    plain_nets = {m: materialize(scorer.net, m).eval() for m in masks}
    x, n, bs = scorer.x, scorer.size, scorer.batch_size

    @torch.inference_mode()
    def plain(m: tuple[int, ...]) -> None:
        net = plain_nets[m]
        for s in range(0, n, bs):
            net(x[s : s + bs])

    t_eval: list[float] = []
    t_plain: list[float] = []
    for m in masks:  # warm-up
        scorer(m, n)
        plain(m)
    for _ in range(repeats):
        for m in masks:
            t0 = time.perf_counter()
            scorer(m, n)
            t1 = time.perf_counter()
            plain(m)
            t2 = time.perf_counter()
            t_eval.append(t1 - t0)
            t_plain.append(t2 - t1)
    ev, pl = statistics.median(t_eval), statistics.median(t_plain)
    return {
        "images": n,
        "eval_s": ev,
        "plain_s": pl,
        "eval_img_per_s": n / ev,
        "plain_img_per_s": n / pl,
        "ratio": pl / ev,
    }


def exhaustive(scorer: SupernetScorer, n_slots: int) -> dict[str, float]:
    table = {}
    for i in range(2**n_slots):
        m = tuple(int(b) for b in format(i, f"0{n_slots}b"))
        table[mask_key(m)] = scorer(m, scorer.size).top1
    return table


def evals_to_reach(episodes: list[dict], target: float) -> float | None:
    """Evaluations paid until the best-so-far reward first reached `target` (None: never)."""
    for e in episodes:
        if e["final"] and e["reward"] >= target - 1e-9:
            return e["spent"]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs"), help="where the supernet run is")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--budget", type=int, default=100, help="evaluations per search run")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--repeats", type=int, default=5, help="throughput repeats per mask")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    load = os.getloadavg()[0]
    print(
        f"device: {device_name(torch.device('cpu'))}, torch {torch.__version__}, "
        f"load average {load:.2f}"
    )

    preset = resolve_preset("short", DATASET)
    splits = load_splits(DATASET, args.data_root)
    config = ModelConfig(BACKBONE, SAM)
    t0 = time.perf_counter()
    sup = train_supernet(
        config,
        splits.train,
        splits.info,
        splits.num_classes,
        preset.supernet,
        preset.sampler,
        args.out,
        "cpu",
        progress=False,
    )
    assert sup is not None
    print(f"supernet {sup.path} ({time.perf_counter() - t0:.0f}s incl. training if needed)")
    net = build_supernet(config, num_classes=splits.num_classes)
    load_model_weights(net, sup.weights)
    hp = preset.search
    idx = fixed_subset(len(splits.heldout), hp.eval_subset, derived_seed(0, "scoring"))
    scorer = SupernetScorer(
        net, Subset(splits.heldout, idx.tolist()), "cpu", batch_size=hp.eval_batch_size
    )
    n_slots = len(net.slot_ids)

    gen = torch.Generator().manual_seed(0)
    masks = [tuple(torch.randint(0, 2, (n_slots,), generator=gen).tolist()) for _ in range(6)]
    tp = throughput(scorer, masks, args.repeats)
    print(
        f"\n1. candidate evaluation vs plain forward of the materialized network "
        f"({tp['images']} images, batch {hp.eval_batch_size}, median of {args.repeats} x 6 masks)"
    )
    print(
        f"   evaluator {tp['eval_img_per_s']:.0f} img/s, plain {tp['plain_img_per_s']:.0f} img/s:"
        f" ratio {tp['ratio']:.3f} (target >= 0.95)"
    )

    t0 = time.perf_counter()
    table = exhaustive(scorer, n_slots)
    reward = Reward(hp.reward_offset, hp.sparsity_weight)
    rewards = sorted(
        ((reward(tuple(int(b) for b in k), v), k) for k, v in table.items()), reverse=True
    )
    print(
        f"\n2. exhaustive: all {len(table)} masks scored in {time.perf_counter() - t0:.0f}s; "
        f"best {rewards[0][1]} reward {rewards[0][0]:.3f}; full "
        f"{reward((1,) * n_slots, table['1' * n_slots]):.3f}; none "
        f"{reward((0,) * n_slots, table['0' * n_slots]):.3f}"
    )
    ks = [1, 5, 26]  # the optimum, the top 1%, the top 5% of 512
    targets = {k: rewards[k - 1][0] for k in ks}
    results: dict[str, list] = {}
    sizes = stage_sizes(net.slot_ids)
    for strategy in ("reinforce", "random", "greedy", "evolution"):
        for seed in seeds:
            search_hp = hp.replace(budget=args.budget, steps=-(-args.budget // hp.samples_per_step))
            ev = Evaluator(TableScorer(table, size=scorer.size), Budget(args.budget, scorer.size))
            ctx = SearchContext(n_slots, sizes, search_hp, seed, known=ev.known)
            with tempfile.TemporaryDirectory() as d:
                res = search_loop(
                    STRATEGIES.get(strategy)(ctx),
                    ev,
                    reward,
                    search_hp,
                    d,
                    log=lambda _m: None,
                    progress=False,
                )
            reached = {k: evals_to_reach(res.episodes, t) for k, t in targets.items()}
            rank = 1 + sum(r > res.best["reward"] + 1e-9 for r, _ in rewards)
            results.setdefault(strategy, []).append(
                {"seed": seed, "spent": res.spent, "best_rank": rank, "reached": reached}
            )
    print(
        f"   evaluations until the best-so-far reward reached the k-th best of {len(table)} "
        f"(budget {args.budget}; '-' = not within budget), seeds {args.seeds}:"
    )
    head = "   {:<10}".format("strategy") + "".join(f"{'k=' + str(k):>16}" for k in ks)
    print(head + f"{'final rank':>16}")
    for strategy, runs in results.items():
        cells = []
        for k in ks:
            vals = [r["reached"][k] for r in runs]
            cells.append("/".join("-" if v is None else f"{v:g}" for v in vals))
        ranks = "/".join(str(r["best_rank"]) for r in runs)
        print(f"   {strategy:<10}" + "".join(f"{c:>16}" for c in cells) + f"{ranks:>16}")
    report = {
        "load_average": load,
        "threads": torch.get_num_threads(),
        "throughput": tp,
        "targets": targets,
        "best_mask": rewards[0][1],
        "results": results,
    }
    out = args.out / "bench_search.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
