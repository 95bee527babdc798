"""`run_search`: dataset + model -> supernet -> search -> ticket file with provenance.

Run directories under out_root:
    supernet_<hash>/  the engine's run (hparams.json, metrics.jsonl, latest.pt, result.json);
                      shared by every search (strategy, seed) over the same supernet
    search_<hash>/    hparams.json, search_state.pt, episodes.jsonl, steps.jsonl, ticket.json,
                      search.png, result.json (its presence = finished)
Both resume where they stopped; a finished search is skipped (its ticket is reused).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from bench.engine.checkpoint import load_model_weights
from bench.engine.distributed import broadcast_object, dist_info, init_distributed
from bench.engine.rundir import canonical_json, prepare_run
from bench.errors import BenchError
from bench.io import atomic_write_json, read_json
from bench.models.resnet import ModelConfig, parse_model_name
from bench.models.sams import sam_defaults
from bench.models.slots import build_supernet
from bench.search.budget import Budget
from bench.search.evaluator import Evaluator, SupernetScorer, fixed_subset, mask_key
from bench.search.hparams import SearchPreset, resolve_preset
from bench.search.loop import saved_meta, search_loop
from bench.search.reward import Reward, measure_slot_latency
from bench.search.strategies import STRATEGIES, SearchContext
from bench.search.strategies.base import derived_seed
from bench.search.supernet import supernet_train_set, train_supernet
from bench.search.ticket_out import (
    PLOT_FILE,
    TICKET_FILE,
    copy_ticket,
    plot_search,
    policy_preference,
    write_ticket,
)
from bench.tickets import stage_sizes
from tasks.classification.datasets import heldout_digest, load_splits

__all__ = [
    "SearchSetup",
    "config_hash",
    "read_result",
    "recalibration_batches",
    "resolve_search",
    "run_search",
]


def config_hash(strategy: str, preset: SearchPreset) -> str:
    """12 hex digits of sha256 over the strategy and every hparam of the three records."""
    payload = canonical_json(
        {
            "strategy": strategy,
            "search": preset.search.to_dict(),
            "supernet": preset.supernet.to_dict(),
            "sampler": preset.sampler.to_dict(),
        }
    )
    return hashlib.sha256(payload.encode("ascii")).hexdigest()[:12]


def recalibration_batches(train_set: Dataset, batches: int, batch_size: int) -> list[torch.Tensor]:
    """K fixed training batches (train transforms, drawn once from constant seeds)."""
    n = len(train_set)
    take = min(n, batches * batch_size)
    idx = np.random.default_rng(derived_seed(0, "bn-recalib")).permutation(n)[:take]
    # Augmentation draws from torch's RNG: fork it so the global stream is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(0, "bn-recalib-augment"))
        xs = torch.stack([train_set[int(i)][0] for i in idx])
    return [b for b in xs.split(batch_size) if len(b) > 1]  # BN in train mode needs 2+


def _device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BenchError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"--device {device}: CUDA is not available on this machine")
        info = dist_info()
        if info.enabled and dev.index is None:
            dev = torch.device("cuda", info.local_rank)
    return dev


@dataclasses.dataclass(frozen=True)
class SearchSetup:
    """What one search runs, resolved from its arguments before any data or training."""

    preset: SearchPreset  # the preset's three records with the overrides laid over them
    config: ModelConfig  # the supernet's structure: backbone, SAM, sharing, SAM options
    seed: int


def resolve_search(
    dataset: str,
    model: str,
    *,
    preset: str = "short",
    seed: int | None = None,
    sharing: str | None = None,
    sam_args: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    iters: int | None = None,
    budget: int | None = None,
    search_overrides: Mapping[str, Any] | None = None,
    supernet_overrides: Mapping[str, Any] | None = None,
    sampler_overrides: Mapping[str, Any] | None = None,
) -> SearchSetup:
    """The preset, network and seed of a search; bad arguments are BenchErrors (nothing heavy).

    sharing / seed None mean "not given": the preset's (`short`: block, 0; `ean`: stage, 666).
    The preset's search space fixes the sharing and some SAM options (`ean`: the official
    ones, see bench.search.hparams.EAN_SPACE); a conflicting flag is refused.
    """
    backbone, sam = parse_model_name(model)
    if sam is None:
        raise BenchError(f"model {model!r}: a search needs a SAM, e.g. {model}-se")
    p = resolve_preset(
        preset,
        dataset,
        epochs=epochs,
        iters=iters,
        budget=budget,
        search=dict(search_overrides or {}),
        supernet=dict(supernet_overrides or {}),
        sampler=dict(sampler_overrides or {}),
    )
    share, args = p.space.resolve(preset, sam, sharing, sam_args)
    config = ModelConfig(backbone, sam, args, share)  # type: ignore[arg-type]
    return SearchSetup(p, config, p.seed if seed is None else int(seed))


def _default_name(model: str, dataset: str, strategy: str, sharing: str, seed: int) -> str:
    share = "-stage" if sharing == "stage" else ""
    return f"{model}{share}-{dataset}-{strategy}-s{seed}"


def run_search(
    dataset: str,
    model: str,
    *,
    strategy: str = "reinforce",
    preset: str = "short",
    budget: int | None = None,
    seed: int | None = None,
    out_root: str | Path = "runs",
    data_root: str | Path | None = None,
    device: str = "cpu",
    epochs: int | None = None,
    iters: int | None = None,
    save_ticket: str | Path | None = None,
    mode: str = "new",
    sharing: str | None = None,
    sam_args: Mapping[str, Any] | None = None,
    heldout: int | str | None = None,
    split_seed: int = 0,
    image_size: int | None = None,
    search_overrides: Mapping[str, Any] | None = None,
    supernet_overrides: Mapping[str, Any] | None = None,
    sampler_overrides: Mapping[str, Any] | None = None,
    ticket_name: str | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
    stop_after_steps: int | None = None,
) -> tuple[Path | None, Path]:
    """Search a ticket for `model` (e.g. resnet20-se) on `dataset`; returns (ticket, run dir).

    Trains or resumes the supernet, then runs or resumes the search, then writes ticket.json
    (and a copy at `save_ticket`), search.png and result.json into the search run dir. The
    returned ticket path is `save_ticket` when given, else the run dir's ticket.json.
    epochs overrides the supernet's epochs, iters the controller steps, budget the number of
    candidate evaluations; the *_overrides dicts set any field of the preset's records by
    name. `mode` "cover" redoes the search (the supernet is reused; remove its directory to
    retrain it). The supernet's seed is the preset's, so every search seed shares it.
    seed / sharing None: the preset's (see `resolve_search`, which checks every argument
    against the preset's search space first).
    stop_after_steps stops the search like a kill after that many rounds (tests): the ticket
    is then None. Call it on every rank under torchrun; rank 0 writes.
    """
    strategy_cls = STRATEGIES.get(strategy)
    if save_ticket is not None and Path(save_ticket).suffix != ".json":
        raise BenchError(f"--save-ticket {save_ticket}: expected a .json path")
    setup = resolve_search(
        dataset,
        model,
        preset=preset,
        seed=seed,
        sharing=sharing,
        sam_args=sam_args,
        epochs=epochs,
        iters=iters,
        budget=budget,
        search_overrides=search_overrides,
        supernet_overrides=supernet_overrides,
        sampler_overrides=sampler_overrides,
    )
    p, config, seed, sam = setup.preset, setup.config, setup.seed, setup.config.sam
    sharing = config.sharing
    assert sam is not None
    hp = p.search
    init_distributed()
    dev = _device(device)
    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    quiet = (lambda _m: None) if not dist_info().is_main else say
    t0 = time.perf_counter()

    splits = load_splits(
        dataset, data_root, heldout=heldout, split_seed=split_seed, image_size=image_size
    )
    with torch.random.fork_rng(devices=[]):  # bad SAM options fail here, before training
        build_supernet(config, num_classes=splits.num_classes)
    sup = train_supernet(
        config,
        splits.train,
        splits.info,
        splits.num_classes,
        p.supernet,
        p.sampler,
        out_root,
        dev,
        log=quiet,
        progress=progress,
    )
    assert sup is not None

    scoring_idx = fixed_subset(len(splits.heldout), hp.eval_subset, derived_seed(0, "scoring"))
    scoring = Subset(splits.heldout, scoring_idx.tolist())
    scoring_sha = heldout_digest(splits.heldout.indices[scoring_idx])
    resolved_args = {**sam_defaults(sam), **config.sam_args}
    identity = {
        "dataset": dataset,
        "model": config.name,
        "sam_args": resolved_args,
        "sharing": sharing,
        "supernet": sup.path.name,
        "strategy": strategy,
        "seed": seed,
    }
    plan = prepare_run(out_root, "search", identity, hp, mode=mode)
    ticket_file = plan.path / TICKET_FILE
    if plan.action == "skip":
        quiet(f"search already finished: {plan.path}")
        out = ticket_file
        if save_ticket is not None and dist_info().is_main:
            out = copy_ticket(ticket_file, save_ticket)
        return (Path(save_ticket) if save_ticket is not None else out), plan.path

    net = build_supernet(config, num_classes=splits.num_classes)
    load_model_weights(net, sup.weights)
    recalib = None
    if hp.bn_recalib_batches:
        sup_train, _ = supernet_train_set(splits.train, p.sampler.train_size)
        recalib = recalibration_batches(sup_train, hp.bn_recalib_batches, hp.bn_recalib_batch_size)
    scorer = SupernetScorer(
        net,
        scoring,
        dev,
        batch_size=hp.eval_batch_size,
        recalib_batches=recalib,
        preload_mb=hp.preload_mb,
        workers=hp.eval_workers,
    )

    previous = saved_meta(plan.path)
    latency = None
    if hp.latency_weight > 0:
        if previous is not None and previous.get("latency"):
            latency = previous["latency"]  # a resume keeps the table it started with
        else:
            shape = (hp.latency_batch, *splits.input_size)
            table = (
                measure_slot_latency(net, shape, repeats=hp.latency_repeats)
                if dist_info().is_main
                else None
            )
            latency = broadcast_object(table)  # one table, so every rank computes one reward
    meta = {
        "supernet": sup.path.name,
        "scoring_images": scorer.size,
        "scoring_sha256": scoring_sha,
        "latency": latency,
    }
    reward = Reward(
        hp.reward_offset,
        hp.sparsity_weight,
        hp.latency_weight,
        tuple(latency["slot_ms"]) if latency else None,
        latency["base_ms"] if latency else None,
    )
    evaluator = Evaluator(scorer, Budget(hp.budget, scorer.size))
    slots = net.slot_ids
    ctx = SearchContext(len(slots), stage_sizes(slots), hp, seed, known=evaluator.known)
    strat = strategy_cls(ctx)
    if hp.halving and not strategy_cls.supports_halving:
        quiet(f"note: --halving applies to strategies that batch their asks; {strategy} ignores it")
    quiet(
        f"search {strategy} on {dataset} {config.name}: {len(slots)} slots, budget {hp.budget} "
        f"evaluations of {scorer.size} held-out images, run {plan.path}"
    )
    res = search_loop(
        strat,
        evaluator,
        reward,
        hp,
        plan.path,
        meta=meta,
        stop_after=stop_after_steps,
        log=quiet,
        progress=progress,
    )
    if not res.complete:
        return None, plan.path
    best = res.best
    if best is None:
        raise BenchError(f"search {plan.path} scored no candidate; raise --budget")

    reference = {}
    for label, bits in (("full", (1,) * len(slots)), ("none", (0,) * len(slots))):
        hit = evaluator.cache.get((mask_key(bits), scorer.size)) or scorer(bits, scorer.size)
        reference[label] = {"top1": hit.top1, "reward": reward(bits, hit.top1)}
    preference = policy_preference(strat, evaluator, reward, ctx.stage_sizes)
    provenance = {
        "dataset": dataset,
        "split": {
            "heldout_rule": splits.info["heldout_rule"],
            "split_seed": split_seed,
            "heldout_sha256": splits.info["heldout_sha256"],
            "sizes": splits.info["sizes"],
            "supernet_train_images": sup.result.get("train_images"),
            "scoring_images": scorer.size,
            "scoring_sha256": scoring_sha,
        },
        "run": plan.path.name,
        "supernet_run": sup.path.name,
        "strategy": strategy,
        "preset": preset,
        "config_hash": config_hash(strategy, p),
        "seed": seed,
        "score": "top-1 % on the held-out scoring subset, weights inherited from the supernet"
        + (f", BN recalibrated on {hp.bn_recalib_batches} train batches" if recalib else ""),
        "best": {
            "step": best["step"],
            "evaluation": best["evaluation"],
            "top1": best["top1"],
            "reward": best["reward"],
            "density": best["density"],
        },
        "budget": {"evaluations": hp.budget, "spent": res.spent},
        "reference": reference,
        **preference,
    }
    name = ticket_name or (
        Path(save_ticket).stem
        if save_ticket is not None
        else _default_name(model, dataset, strategy, sharing, seed)
    )
    mask = tuple(int(b) for b in best["mask"])
    out = ticket_file
    if dist_info().is_main:
        ticket, _ = write_ticket(plan.path, name, config, mask, provenance)
        plot_search(
            res.episodes,
            res.rounds,
            slots,
            plan.path / PLOT_FILE,
            title=f"{name}: {strategy} on {dataset}, best {ticket.stages} "
            f"(top1 {best['top1']:.2f}, reward {best['reward']:.3f})",
        )
        if save_ticket is not None:
            out = copy_ticket(ticket_file, save_ticket)
        atomic_write_json(
            plan.result_path,
            {
                "ticket": str(ticket_file),
                "checksum": ticket.checksum,
                "stages": ticket.stages,
                "best": provenance["best"],
                "reference": reference,
                **preference,
                "steps": res.steps,
                "spent": res.spent,
                "resumed_from": res.resumed_from,
                "wall_time_s": time.perf_counter() - t0,
            },
        )
        quiet(
            f"ticket {ticket.stages} ({ticket.kept}/{ticket.total} slots): held-out top1 "
            f"{best['top1']:.2f} (full {reference['full']['top1']:.2f}, none "
            f"{reference['none']['top1']:.2f}), reward {best['reward']:.3f}, found at step "
            f"{best['step']}; {res.spent:g} evaluations -> {out}"
        )
    return (Path(save_ticket) if save_ticket is not None else out), plan.path


def read_result(run_dir: str | Path) -> dict[str, Any]:
    """The result.json of a finished search run."""
    return read_json(Path(run_dir) / "result.json")
