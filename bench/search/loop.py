"""The resumable search loop: ask, score, reward, tell, log, checkpoint; repeat.

After every round (one ask/tell) rank 0 appends the round's evaluations to episodes.jsonl
and its summary to steps.jsonl, then atomically rewrites search_state.pt: the strategy's
state (controller weights, optimizer, baseline, step, replay buffer, generator), the
evaluator's cache and budget, how many log records are committed, the best so far and the
global RNG states. A resumed search reloads it and cuts both logs to the committed records
(dropping lines of a round whose checkpoint never landed, or a torn last line), so a killed
and resumed search continues exactly where the last checkpoint left it and ends with the
same ticket.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bench.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from bench.engine.distributed import barrier, broadcast_object, dist_info
from bench.errors import BenchError
from bench.io import atomic_write_text, read_jsonl
from bench.search.evaluator import Evaluation, Evaluator, mask_key, with_reward
from bench.search.hparams import SearchHParams
from bench.search.reward import Reward
from bench.search.strategies.base import Strategy
from bench.tickets import mask_to_stages

__all__ = [
    "EPISODES_FILE",
    "STATE_FILE",
    "STEPS_FILE",
    "LoopResult",
    "saved_meta",
    "search_loop",
]

STATE_FILE = "search_state.pt"
EPISODES_FILE = "episodes.jsonl"
STEPS_FILE = "steps.jsonl"
# Rounds in a row that score nothing new (all cache hits) before a strategy is deemed stuck
# (e.g. evolution in a tiny, fully scored space); reinforce is bounded by its steps anyway.
STALL_ROUNDS = 1000


@dataclass
class LoopResult:
    """How the loop ended and what it found (best: the best final evaluation's record)."""

    complete: bool
    steps: int
    spent: float
    best: dict[str, Any] | None
    episodes: list[dict[str, Any]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None


def saved_meta(run_dir: str | Path) -> dict[str, Any] | None:
    """The `meta` a previous, interrupted loop in run_dir was started with (None if fresh)."""
    path = Path(run_dir) / STATE_FILE
    exists = broadcast_object(path.is_file() if dist_info().is_main else None)
    return load_checkpoint(path)["meta"] if exists else None


@contextlib.contextmanager
def one_thread():
    """Run the controller's tiny tensor ops on one thread.

    With several intra-op threads each tiny op pays a thread-pool barrier; on a loaded CPU
    that is ~10 ms per softmax instead of microseconds. The evaluator keeps all threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    if not records:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(_lines(records))
        f.flush()
        os.fsync(f.fileno())


def _commit(
    episodes_path: Path,
    episodes: list[dict[str, Any]],
    steps_path: Path,
    rounds: list[dict[str, Any]],
) -> None:
    """Append the logs first: a kill before the checkpoint lands leaves extra lines, which a
    resume cuts; never a checkpoint that counts lines the logs lack."""
    _append_lines(episodes_path, episodes)
    _append_lines(steps_path, rounds)


def _read_prefix(path: Path, count: int) -> list[dict[str, Any]]:
    records = read_jsonl(path)
    if len(records) < count:
        raise BenchError(
            f"{path} has {len(records)} records, its checkpoint expects {count}; "
            "rerun with --mode cover"
        )
    return records[:count]


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True, allow_nan=False) + "\n" for r in records)


def _episode(
    ev: Evaluation,
    step: int,
    number: int,
    spent_after: float,
    reward: Reward,
    stage_sizes: tuple[int, ...],
    extra: Mapping[str, Any],
    images_per_evaluation: int,
) -> dict[str, Any]:
    rec = {
        "step": step,
        "evaluation": number,
        "index": ev.index,
        "mask": mask_key(ev.mask),
        "stages": mask_to_stages(ev.mask, stage_sizes),
        "density": sum(ev.mask) / len(ev.mask),
        "top1": ev.top1,
        "loss": ev.loss,
        "n_images": ev.n_images,
        "rung": ev.rung,
        "final": ev.final,
        "cached": ev.cached,
        "cost": ev.cost / images_per_evaluation,
        "spent": spent_after,
        **reward.parts(ev.mask, ev.top1),
    }
    rec.update(extra)
    return rec


def search_loop(
    strategy: Strategy,
    evaluator: Evaluator,
    reward: Reward,
    hp: SearchHParams,
    run_dir: str | Path,
    *,
    meta: Mapping[str, Any] | None = None,
    stop_after: int | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
    checkpoint_every: int = 1,
) -> LoopResult:
    """Run `strategy` against `evaluator` until it stops asking or the budget is spent.

    meta: facts the run depends on that are not hparams (latency table, subset digest);
    a resume refuses a checkpoint written with other meta. stop_after: stop once this many
    rounds are done (as a kill would, for tests); the result then says complete=False.
    checkpoint_every: rounds per checkpoint (1: after every round; larger values suit only
    toy problems whose rounds cost less than a checkpoint write).
    Every rank calls this under torchrun; rank 0 writes the files.
    """
    info = dist_info()
    say = (log or (lambda m: print(m, file=sys.stderr, flush=True))) if info.is_main else None
    run_dir = Path(run_dir)
    state_path = run_dir / STATE_FILE
    episodes_path, steps_path = run_dir / EPISODES_FILE, run_dir / STEPS_FILE
    meta = dict(meta or {})
    stage_sizes = strategy.ctx.stage_sizes
    per_eval = evaluator.budget.images_per_evaluation

    episodes: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    step = stall = 0
    finished = False
    resumed_from = None
    if broadcast_object(state_path.is_file() if info.is_main else None):
        ck = load_checkpoint(state_path)
        if ck["hparams"] != hp.to_dict() or ck["strategy"] != strategy.name:
            raise BenchError(f"{state_path} was written by another search; rerun with --mode cover")
        if ck["meta"] != meta:
            raise BenchError(f"{state_path} was written with other inputs; rerun with --mode cover")
        strategy.load_state_dict(ck["strategy_state"])
        evaluator.load_state_dict(ck["evaluator"])
        restore_rng_state(ck["rng"])
        best, step, stall, finished = ck["best"], ck["step"], ck["stall"], ck["finished"]
        # The logs may hold lines of a round whose checkpoint never landed: cut them.
        episodes = _read_prefix(episodes_path, ck["n_episodes"])
        rounds = _read_prefix(steps_path, ck["n_rounds"])
        resumed_from = step
        if info.is_main:
            atomic_write_text(episodes_path, _lines(episodes))
            atomic_write_text(steps_path, _lines(rounds))
        if say:
            say(
                f"resuming search {run_dir} at step {step} ({evaluator.budget.spent:g} evaluations)"
            )
    elif info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        episodes_path.unlink(missing_ok=True)
        steps_path.unlink(missing_ok=True)

    use_halving = hp.halving and strategy.supports_halving
    show = info.is_main and (progress if progress is not None else sys.stderr.isatty())
    bar = tqdm(
        total=hp.budget,
        initial=evaluator.budget.spent,
        desc=f"search {strategy.name}",
        unit="eval",
        disable=not show,
        leave=False,
        dynamic_ncols=True,
    )
    stopped = False
    # Records of rounds since the last checkpoint: logged together with it.
    pending_eps: list[dict[str, Any]] = []
    pending_rounds: list[dict[str, Any]] = []
    try:
        while not finished:
            if stop_after is not None and step >= stop_after:
                stopped = True
                break
            if evaluator.budget.exhausted or stall >= STALL_ROUNDS:
                finished = True
                break
            with one_thread():
                asked = strategy.ask()
            if not asked:
                finished = True
                break
            spent_before = evaluator.budget.spent_images
            if use_halving:
                acts, results = evaluator.halving(
                    asked,
                    key=lambda e: reward(e.mask, e.top1),
                    eta=hp.halving_eta,
                    min_images=hp.halving_min_images,
                )
            else:
                acts = results = evaluator.evaluate(asked)
            if not acts:  # the budget can't pay for anything more
                finished = True
                break
            acts = [with_reward(e, reward(e.mask, e.top1)) for e in acts]
            results = [with_reward(e, reward(e.mask, e.top1)) for e in results]
            with one_thread():
                extras = strategy.tell(asked, results)
                keep = strategy.keep_probabilities()
                info_fields = strategy.step_info()
            by_result = {(r.index, r.rung): x for r, x in zip(results, extras)}

            new_eps = []
            running = spent_before
            for ev in acts:
                running += ev.cost
                rec = _episode(
                    ev,
                    step,
                    len(episodes) + len(new_eps),
                    running / per_eval,
                    reward,
                    stage_sizes,
                    by_result.get((ev.index, ev.rung), {}),
                    per_eval,
                )
                new_eps.append(rec)
                if ev.final and (best is None or rec["reward"] > best["reward"]):
                    best = rec
            episodes.extend(new_eps)
            charged = sum(ev.cost for ev in acts)
            stall = 0 if charged else stall + 1
            summary = {
                "step": step,
                "asked": len(asked),
                "evaluated": len(results),
                "spent": evaluator.budget.spent,
                "best_reward": best["reward"] if best else None,
                "keep_prob": keep,
                **info_fields,
            }
            rounds.append(summary)
            pending_eps.extend(new_eps)
            pending_rounds.append(summary)
            step += 1
            if info.is_main and step % checkpoint_every == 0:
                _commit(episodes_path, pending_eps, steps_path, pending_rounds)
                _save(
                    state_path, strategy, evaluator, hp, meta, episodes, rounds, best, step, stall
                )
                pending_eps, pending_rounds = [], []
            bar.update(charged / per_eval)
            if say and (not show) and (step % 10 == 0 or any(e is best for e in new_eps)):
                b = best or {}
                say(
                    f"search step {step}: {evaluator.budget.spent:g}/{hp.budget} evaluations, "
                    f"best reward {b.get('reward', float('nan')):.3f} "
                    f"(top1 {b.get('top1', float('nan')):.2f}, {b.get('stages', '-')})"
                )
    finally:
        bar.close()
    if info.is_main and (finished or pending_rounds):
        _commit(episodes_path, pending_eps, steps_path, pending_rounds)
        _save(
            state_path, strategy, evaluator, hp, meta, episodes, rounds, best, step, stall, finished
        )
    barrier()
    return LoopResult(
        complete=finished and not stopped,
        steps=step,
        spent=evaluator.budget.spent,
        best=best,
        episodes=episodes,
        rounds=rounds,
        resumed_from=resumed_from,
    )


def _save(
    path: Path,
    strategy: Strategy,
    evaluator: Evaluator,
    hp: SearchHParams,
    meta: dict[str, Any],
    episodes: list[dict[str, Any]],
    rounds: list[dict[str, Any]],
    best: dict[str, Any] | None,
    step: int,
    stall: int,
    finished: bool = False,
) -> None:
    save_checkpoint(
        path,
        {
            "hparams": hp.to_dict(),
            "strategy": strategy.name,
            "meta": meta,
            "strategy_state": strategy.state_dict(),
            "evaluator": evaluator.state_dict(),
            "rng": capture_rng_state(),
            # Counts only: the logs themselves are the records (keeps each save small).
            "n_episodes": len(episodes),
            "n_rounds": len(rounds),
            "best": best,
            "step": step,
            "stall": stall,
            "finished": finished,
        },
    )
