"""`run_search`: dataset + model -> supernet -> search -> ticket file with provenance.

The settings of one search are a `SearchConfig` (bench.search.config). Run directories
under out_root:
    supernet_<hash>/  the engine's run (hparams.json, metrics.jsonl, latest.pt, result.json);
                      shared by every search (strategy, seed) over the same supernet
    search_<hash>/    hparams.json, search_state.pt, episodes.jsonl, steps.jsonl, ticket.json,
                      search.png, result.json (its presence = finished)
Both resume where they stopped; a finished search is skipped (its ticket is reused).
result.json's wall time sums every segment of a resumed run: the supernet's (as the engine
records them) and the search's (each up to its last checkpoint, see bench.search.loop).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from bench.data.datasets import Splits, heldout_digest
from bench.engine.checkpoint import load_model_weights
from bench.engine.device import select_device
from bench.engine.distributed import broadcast_object, dist_info, init_distributed
from bench.engine.rundir import RunPlan, prepare_run
from bench.models.resnet import SlotResNet
from bench.models.sams import sam_defaults
from bench.models.slots import build_supernet
from bench.search.budget import Budget
from bench.search.config import SearchConfig, SearchSetup, resolve_search
from bench.search.evaluator import Evaluator, SupernetScorer, fixed_subset, mask_key
from bench.search.hparams import SearchHParams, SearchPreset
from bench.search.loop import LoopResult, saved_meta, search_loop
from bench.search.reward import Reward, measure_slot_latency
from bench.search.strategies import STRATEGIES, SearchContext, Strategy
from bench.search.strategies.base import derived_seed
from bench.search.supernet import SupernetRun, supernet_train_set, train_supernet
from bench.search.ticket_out import (
    PLOT_FILE,
    TICKET_FILE,
    copy_ticket,
    plot_search,
    policy_preference,
    write_ticket,
)
from bench.ticket.schema import Ticket, stage_sizes
from bench.util.errors import BenchError
from bench.util.fingerprint import value_sha256
from bench.util.io import atomic_write_json
from bench.util.progress import show_progress

__all__ = [
    "SearchConfig",
    "SearchSetup",
    "config_hash",
    "recalibration_batches",
    "resolve_search",
    "run_search",
]

_log = logging.getLogger(__name__)


def config_hash(strategy: str, preset: SearchPreset) -> str:
    """12 hex digits of sha256 over the strategy and every hparam of the three records."""
    return value_sha256(
        {
            "strategy": strategy,
            "search": preset.search.to_dict(),
            "supernet": preset.supernet.to_dict(),
            "sampler": preset.sampler.to_dict(),
        },
        12,
    )


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


def _default_name(model: str, dataset: str, strategy: str, sharing: str, seed: int) -> str:
    share = "-stage" if sharing == "stage" else ""
    return f"{model}{share}-{dataset}-{strategy}-s{seed}"


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What the search stage starts from: its settings, data, supernet and device."""

    cfg: SearchConfig
    setup: SearchSetup
    splits: Splits
    sup: SupernetRun
    device: torch.device
    scoring: Dataset  # the fixed held-out subset candidates are scored on
    scoring_sha: str

    @property
    def hp(self) -> SearchHParams:
        return self.setup.preset.search


@dataclasses.dataclass(frozen=True)
class _Search:
    """A search ready to run: its run directory and the parts the loop drives."""

    plan: RunPlan
    scorer: SupernetScorer
    evaluator: Evaluator
    reward: Reward
    strategy: Strategy
    meta: dict[str, Any]
    recalibrated: bool


def run_search(
    config: SearchConfig | str,
    model: str | None = None,
    *,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
    stop_after_steps: int | None = None,
    **settings: Any,
) -> tuple[Path | None, Path]:
    """Run the search `config` describes; returns (ticket path, search run dir).

    Trains or resumes the supernet, then runs or resumes the search, then writes ticket.json
    (and a copy at `save_ticket`), search.png and result.json into the search run dir. The
    returned ticket path is `save_ticket` when given, else the run dir's ticket.json. The
    supernet's seed is the preset's, so every search seed shares it. Every setting is
    checked (`SearchConfig.resolve`) before any data is read or anything trains.
    `run_search(dataset, model, **settings)` builds the config from SearchConfig's fields.
    log: where status lines go (default: this module's logger); progress: bars (default: on a
    terminal). stop_after_steps stops the search like a kill after that many rounds (tests):
    the ticket is then None. Call it on every rank under torchrun; rank 0 writes.
    """
    if isinstance(config, SearchConfig):
        if model is not None or settings:
            raise TypeError("run_search(config): give the settings in the SearchConfig")
        cfg = config
    else:
        cfg = SearchConfig(config, model, **settings)  # type: ignore[arg-type]
    setup = cfg.resolve()  # bad settings fail here, before any data or training
    device = select_device(cfg.device, deterministic=cfg.deterministic)
    init_distributed(device)
    say = log or _log.info
    quiet = say if dist_info().is_main else (lambda _m: None)
    inputs = _prepare_inputs(cfg, setup, device, quiet, progress)
    segment_start = time.perf_counter()  # the supernet keeps its own time
    plan = prepare_run(cfg.out_root, "search", _identity(inputs), inputs.hp, mode=cfg.mode)
    if plan.action == "skip":
        quiet(f"search already finished: {plan.path}")
        return _reuse(cfg, plan), plan.path
    search = _build_search(inputs, plan, quiet)
    res = search_loop(
        search.strategy,
        search.evaluator,
        search.reward,
        inputs.hp,
        plan.path,
        meta=search.meta,
        stop_after=stop_after_steps,
        log=quiet,
        progress=progress,
        segment_start=segment_start,
    )
    if not res.complete:
        return None, plan.path
    if res.best is None:
        raise BenchError(f"search {plan.path} scored no candidate; raise --budget")
    return _finish(inputs, search, res, segment_start, quiet, progress), plan.path


def _prepare_inputs(
    cfg: SearchConfig,
    setup: SearchSetup,
    device: torch.device,
    log: Callable[[str], None],
    progress: bool | None,
) -> _Inputs:
    """Load the splits, check the network builds, train (or find) the supernet."""
    splits = cfg.data.load(cfg.dataset)
    if len(splits.heldout) == 0:
        raise BenchError(f"{cfg.dataset}: the held-out split is empty; a search scores on it")
    with torch.random.fork_rng(devices=[]):  # bad SAM options fail here, before training
        build_supernet(setup.config, num_classes=splits.num_classes)
    p = setup.preset
    sup = train_supernet(
        setup.config,
        splits.train,
        splits.info,
        splits.num_classes,
        p.supernet,
        p.sampler,
        cfg.out_root,
        device,
        log=log,
        progress=progress,
    )
    assert sup is not None
    idx = fixed_subset(len(splits.heldout), p.search.eval_subset, derived_seed(0, "scoring"))
    scoring = Subset(splits.heldout, idx.tolist())
    sha = heldout_digest(splits.heldout.indices[idx])
    return _Inputs(cfg, setup, splits, sup, device, scoring, sha)


def _identity(inputs: _Inputs) -> dict[str, Any]:
    """What names a search run besides its hparams."""
    cfg, config = inputs.cfg, inputs.setup.config
    assert config.sam is not None
    return {
        "dataset": cfg.dataset,
        "model": config.name,
        "sam_args": {**sam_defaults(config.sam), **config.sam_args},
        "sharing": config.sharing,
        "supernet": inputs.sup.path.name,
        "strategy": cfg.strategy,
        "seed": inputs.setup.seed,
    }


def _reuse(cfg: SearchConfig, plan: RunPlan) -> Path:
    """A finished search's ticket (copied to save_ticket when given)."""
    ticket_file = plan.path / TICKET_FILE
    if cfg.save_ticket is None:
        return ticket_file
    if dist_info().is_main:
        copy_ticket(ticket_file, cfg.save_ticket)
    return cfg.save_ticket


def _build_search(inputs: _Inputs, plan: RunPlan, log: Callable[[str], None]) -> _Search:
    """The supernet with its weights, the scorer, reward, evaluator and strategy."""
    hp, setup = inputs.hp, inputs.setup
    net = build_supernet(setup.config, num_classes=inputs.splits.num_classes)
    load_model_weights(net, inputs.sup.weights)
    recalib = None
    if hp.bn_recalib_batches:
        sup_train, _ = supernet_train_set(inputs.splits.train, setup.preset.sampler.train_size)
        recalib = recalibration_batches(sup_train, hp.bn_recalib_batches, hp.bn_recalib_batch_size)
    scorer = SupernetScorer(
        net,
        inputs.scoring,
        inputs.device,
        batch_size=hp.eval_batch_size,
        recalib_batches=recalib,
        preload_mb=hp.preload_mb,
        workers=hp.eval_workers,
        log=log,
    )
    latency = _latency_table(net, inputs, plan)
    meta = {
        "supernet": inputs.sup.path.name,
        "scoring_images": scorer.size,
        "scoring_sha256": inputs.scoring_sha,
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
    slots, name = net.slot_ids, inputs.cfg.strategy
    strategy_cls = STRATEGIES.get(name)
    ctx = SearchContext(len(slots), stage_sizes(slots), hp, setup.seed, known=evaluator.known)
    if hp.halving and not strategy_cls.supports_halving:
        log(f"note: --halving applies to strategies that batch their asks; {name} ignores it")
    log(
        f"search {name} on {inputs.cfg.dataset} {setup.config.name}: {len(slots)} slots, "
        f"budget {hp.budget} evaluations of {scorer.size} held-out images, run {plan.path}"
    )
    return _Search(plan, scorer, evaluator, reward, strategy_cls(ctx), meta, recalib is not None)


def _latency_table(net: SlotResNet, inputs: _Inputs, plan: RunPlan) -> dict[str, Any] | None:
    """The per-slot latency table of the reward's latency term (None when it is off)."""
    hp = inputs.hp
    if hp.latency_weight <= 0:
        return None
    previous = saved_meta(plan.path)
    if previous is not None and previous.get("latency"):
        return previous["latency"]  # a resume keeps the table it started with
    shape = (hp.latency_batch, *inputs.splits.input_size)
    table = (
        measure_slot_latency(net, shape, repeats=hp.latency_repeats)
        if dist_info().is_main
        else None
    )
    return broadcast_object(table)  # one table, so every rank computes one reward


def _finish(
    inputs: _Inputs,
    search: _Search,
    res: LoopResult,
    segment_start: float,
    log: Callable[[str], None],
    progress: bool | None,
) -> Path:
    """Score the references, then write ticket.json, search.png and result.json (rank 0)."""
    cfg, setup = inputs.cfg, inputs.setup
    reference = _references(search, progress)
    preference = policy_preference(
        search.strategy, search.evaluator, search.reward, search.strategy.ctx.stage_sizes
    )
    provenance = _provenance(inputs, search, res, reference, preference)
    name = cfg.ticket_name or (
        cfg.save_ticket.stem
        if cfg.save_ticket is not None
        else _default_name(cfg.model, cfg.dataset, cfg.strategy, setup.config.sharing, setup.seed)
    )
    out = cfg.save_ticket if cfg.save_ticket is not None else search.plan.path / TICKET_FILE
    if dist_info().is_main:
        ticket = _write_outputs(inputs, search, res, name, provenance)
        search_s = res.previous_s + time.perf_counter() - segment_start
        supernet_s = float(inputs.sup.result.get("wall_time_s") or 0.0)
        atomic_write_json(
            search.plan.result_path,
            {
                "ticket": str(search.plan.path / TICKET_FILE),
                "checksum": ticket.checksum,
                "stages": ticket.stages,
                "best": provenance["best"],
                "reference": reference,
                **preference,
                "steps": res.steps,
                "spent": res.spent,
                "resumed_from": res.resumed_from,
                "wall_time_s": supernet_s + search_s,
                "supernet_wall_time_s": supernet_s,
                "search_wall_time_s": search_s,
                "search_segments": res.segments,
            },
        )
        best = provenance["best"]
        log(
            f"ticket {ticket.stages} ({ticket.kept}/{ticket.total} slots): held-out top1 "
            f"{best['top1']:.2f} (full {reference['full']['top1']:.2f}, none "
            f"{reference['none']['top1']:.2f}), reward {best['reward']:.3f}, found at step "
            f"{best['step']}; {res.spent:g} evaluations -> {out}"
        )
    return out


def _write_outputs(
    inputs: _Inputs, search: _Search, res: LoopResult, name: str, provenance: dict[str, Any]
) -> Ticket:
    """ticket.json and search.png in the run dir, and the ticket's copy at save_ticket."""
    cfg, path, best = inputs.cfg, search.plan.path, res.best
    assert best is not None
    mask = tuple(int(b) for b in best["mask"])
    ticket, _ = write_ticket(path, name, inputs.setup.config, mask, provenance)
    plot_search(
        res.episodes,
        res.rounds,
        search.scorer.net.slot_ids,
        path / PLOT_FILE,
        title=f"{name}: {cfg.strategy} on {cfg.dataset}, best {ticket.stages} "
        f"(top1 {best['top1']:.2f}, reward {best['reward']:.3f})",
    )
    if cfg.save_ticket is not None:
        copy_ticket(path / TICKET_FILE, cfg.save_ticket)
    return ticket


def _references(search: _Search, progress: bool | None) -> dict[str, dict[str, float]]:
    """Top-1 and reward of the full and the SAM-free network (cached when already scored)."""
    n, size = search.strategy.ctx.n_slots, search.scorer.size
    show = dist_info().is_main and show_progress(progress)
    reference = {}
    labels = tqdm(("full", "none"), desc="reference masks", disable=not show, leave=False)
    for label in labels:
        bits = (1 if label == "full" else 0,) * n
        hit = search.evaluator.cache.get((mask_key(bits), size)) or search.scorer(bits, size)
        reference[label] = {"top1": hit.top1, "reward": search.reward(bits, hit.top1)}
    return reference


def _provenance(
    inputs: _Inputs,
    search: _Search,
    res: LoopResult,
    reference: Mapping[str, Any],
    preference: Mapping[str, Any],
) -> dict[str, Any]:
    """The searched ticket's provenance: split, runs, preset, best, budget, references."""
    cfg, setup, info, hp = inputs.cfg, inputs.setup, inputs.splits.info, inputs.hp
    best = res.best
    assert best is not None
    recalib = f", BN recalibrated on {hp.bn_recalib_batches} train batches"
    return {
        "dataset": cfg.dataset,
        "split": {
            "heldout_rule": info["heldout_rule"],
            "split_seed": cfg.split_seed,
            "heldout_sha256": info["heldout_sha256"],
            "sizes": info["sizes"],
            "supernet_train_images": inputs.sup.result.get("train_images"),
            "scoring_images": search.scorer.size,
            "scoring_sha256": inputs.scoring_sha,
        },
        "run": search.plan.path.name,
        "supernet_run": inputs.sup.path.name,
        "strategy": cfg.strategy,
        "preset": setup.preset.name,
        "config_hash": config_hash(cfg.strategy, setup.preset),
        "seed": setup.seed,
        "score": "top-1 % on the held-out scoring subset, weights inherited from the supernet"
        + (recalib if search.recalibrated else ""),
        "best": {k: best[k] for k in ("step", "evaluation", "top1", "reward", "density")},
        "budget": {"evaluations": hp.budget, "spent": res.spent},
        "reference": dict(reference),
        **preference,
    }


def read_result(run_dir: str | Path) -> dict[str, Any]:
    """The result.json of a finished search run."""
    from bench.engine.state import json_or_refuse

    return json_or_refuse(Path(run_dir) / "result.json")
