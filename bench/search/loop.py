"""The resumable search loop: ask, score, reward, tell, log, checkpoint; repeat.

After every round (one ask/tell) rank 0 appends the round's evaluations to episodes.jsonl
and its summary to steps.jsonl, then atomically rewrites search_state.pt: the strategy's
state (controller weights, optimizer, baseline, step, replay buffer, generator), the
evaluator's cache and budget, how many log records are committed, the best so far and the
global RNG states, and the wall time spent so far. A resumed search reloads it and cuts both
logs to the committed records (dropping lines of a round whose checkpoint never landed, or a
torn last line), so a killed and resumed search continues exactly where the last checkpoint
left it and ends with the same ticket. A round is the checkpoint granularity: a kill loses
at most the round in progress.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
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
from bench.search.evaluator import Evaluation, Evaluator, mask_key, with_reward
from bench.search.hparams import SearchHParams
from bench.search.reward import Reward
from bench.search.strategies.base import Strategy
from bench.ticket.schema import mask_to_stages
from bench.util.errors import BenchError
from bench.util.faults import kill_point
from bench.util.io import atomic_write_text, read_jsonl
from bench.util.progress import show_progress

__all__ = [
    "EPISODES_FILE",
    "STATE_FILE",
    "STEPS_FILE",
    "LoopResult",
    "saved_meta",
    "search_loop",
]

_log = logging.getLogger(__name__)
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
    previous_s: float = 0.0  # wall time of earlier segments, up to each one's last checkpoint
    segments: int = 1  # this one and the earlier ones that reached a checkpoint


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
    segment_start: float | None = None,
) -> LoopResult:
    """Run `strategy` against `evaluator` until it stops asking or the budget is spent.

    meta: facts the run depends on that are not hparams (latency table, subset digest);
    a resume refuses a checkpoint written with other meta. stop_after: stop once this many
    rounds are done (as a kill would, for tests); the result then says complete=False.
    checkpoint_every: rounds per checkpoint (1: after every round; larger values suit only
    toy problems whose rounds cost less than a checkpoint write). segment_start: the
    `time.perf_counter()` at which this process's part of the search began (default: now);
    each checkpoint records the wall time of every segment so far.
    Every rank calls this under torchrun; rank 0 writes the files.
    """
    info = dist_info()
    say = (log or _log.info) if info.is_main else None
    loop = _Loop(strategy, evaluator, reward, hp, Path(run_dir), dict(meta or {}))
    loop.segment_start = time.perf_counter() if segment_start is None else segment_start
    loop.resume_or_start(say)
    show = info.is_main and show_progress(progress)
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
    try:
        while not loop.finished:
            if stop_after is not None and loop.step >= stop_after:
                stopped = True
                break
            new_eps, charged = loop.round()
            if loop.finished:
                break
            if info.is_main and loop.step % checkpoint_every == 0:
                loop.checkpoint()
            bar.update(charged / evaluator.budget.images_per_evaluation)
            if say and not show:
                loop.report(say, new_eps)
    finally:
        bar.close()
    if info.is_main and (loop.finished or loop.pending_rounds):
        loop.checkpoint()
    barrier()
    return loop.result(complete=loop.finished and not stopped)


class _Loop:
    """The state of one search loop: what it has logged, found and spent, and its files."""

    def __init__(
        self,
        strategy: Strategy,
        evaluator: Evaluator,
        reward: Reward,
        hp: SearchHParams,
        run_dir: Path,
        meta: dict[str, Any],
    ) -> None:
        self.strategy, self.evaluator, self.reward, self.hp = strategy, evaluator, reward, hp
        self.run_dir, self.meta = run_dir, meta
        self.state_path = run_dir / STATE_FILE
        self.episodes_path, self.steps_path = run_dir / EPISODES_FILE, run_dir / STEPS_FILE
        self.episodes: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        # Records of rounds since the last checkpoint: logged together with it.
        self.pending_eps: list[dict[str, Any]] = []
        self.pending_rounds: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.step = self.stall = 0
        self.finished = False
        self.resumed_from: int | None = None
        self.previous_s, self.segments = 0.0, 1
        self.segment_start = time.perf_counter()

    def resume_or_start(self, say: Callable[[str], None] | None) -> None:
        """Reload the last checkpoint and cut the logs to it, or start empty logs."""
        is_main = dist_info().is_main
        if not broadcast_object(self.state_path.is_file() if is_main else None):
            if is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.episodes_path.unlink(missing_ok=True)
                self.steps_path.unlink(missing_ok=True)
            return
        ck = load_checkpoint(self.state_path)
        if ck["hparams"] != self.hp.to_dict() or ck["strategy"] != self.strategy.name:
            raise BenchError(
                f"{self.state_path} was written by another search; rerun with --mode cover"
            )
        if ck["meta"] != self.meta:
            raise BenchError(
                f"{self.state_path} was written with other inputs; rerun with --mode cover"
            )
        self.strategy.load_state_dict(ck["strategy_state"])
        self.evaluator.load_state_dict(ck["evaluator"])
        restore_rng_state(ck["rng"])
        self.best, self.step, self.stall = ck["best"], ck["step"], ck["stall"]
        self.finished = ck["finished"]
        self.previous_s = float(ck.get("elapsed_s", 0.0))
        self.segments = int(ck.get("segments", 1)) + 1
        # The logs may hold lines of a round whose checkpoint never landed: cut them.
        self.episodes = _read_prefix(self.episodes_path, ck["n_episodes"])
        self.rounds = _read_prefix(self.steps_path, ck["n_rounds"])
        self.resumed_from = self.step
        if is_main:
            atomic_write_text(self.episodes_path, _lines(self.episodes))
            atomic_write_text(self.steps_path, _lines(self.rounds))
        if say:
            spent = self.evaluator.budget.spent
            say(f"resuming search {self.run_dir} at step {self.step} ({spent:g} evaluations)")

    def round(self) -> tuple[list[dict[str, Any]], float]:
        """One ask / score / tell; its new episodes and the images it charged.

        Sets `finished` instead when the budget, the strategy or a stall ends the search.
        """
        strategy, evaluator, reward, hp = self.strategy, self.evaluator, self.reward, self.hp
        if evaluator.budget.exhausted or self.stall >= STALL_ROUNDS:
            self.finished = True
            return [], 0.0
        with one_thread():
            asked = strategy.ask()
        if not asked:
            self.finished = True
            return [], 0.0
        spent_before = evaluator.budget.spent_images
        if hp.halving and strategy.supports_halving:
            acts, results = evaluator.halving(
                asked,
                key=lambda e: reward(e.mask, e.top1),
                eta=hp.halving_eta,
                min_images=hp.halving_min_images,
            )
        else:
            acts = results = evaluator.evaluate(asked)
        if not acts:  # the budget can't pay for anything more
            self.finished = True
            return [], 0.0
        acts = [with_reward(e, reward(e.mask, e.top1)) for e in acts]
        results = [with_reward(e, reward(e.mask, e.top1)) for e in results]
        with one_thread():
            extras = strategy.tell(asked, results)
            keep = strategy.keep_probabilities()
            info_fields = strategy.step_info()
        by_result = {(r.index, r.rung): x for r, x in zip(results, extras)}
        new_eps = self._record_episodes(acts, by_result, spent_before)
        charged = sum(ev.cost for ev in acts)
        self._record_round(len(asked), len(results), keep, info_fields, charged)
        return new_eps, charged

    def _record_episodes(
        self,
        acts: list[Evaluation],
        by_result: Mapping[tuple[int, int], Mapping[str, Any]],
        spent_before: float,
    ) -> list[dict[str, Any]]:
        """One log record per evaluation of the round (the best so far updated)."""
        per_eval = self.evaluator.budget.images_per_evaluation
        new_eps = []
        running = spent_before
        for ev in acts:
            running += ev.cost
            rec = _episode(
                ev,
                self.step,
                len(self.episodes) + len(new_eps),
                running / per_eval,
                self.reward,
                self.strategy.ctx.stage_sizes,
                by_result.get((ev.index, ev.rung), {}),
                per_eval,
            )
            new_eps.append(rec)
            if ev.final and (self.best is None or rec["reward"] > self.best["reward"]):
                self.best = rec
        self.episodes.extend(new_eps)
        self.pending_eps.extend(new_eps)
        return new_eps

    def _record_round(
        self,
        asked: int,
        evaluated: int,
        keep: Any,
        info_fields: Mapping[str, Any],
        charged: float,
    ) -> None:
        self.stall = 0 if charged else self.stall + 1
        summary = {
            "step": self.step,
            "asked": asked,
            "evaluated": evaluated,
            "spent": self.evaluator.budget.spent,
            "best_reward": self.best["reward"] if self.best else None,
            "keep_prob": keep,
            **info_fields,
        }
        self.rounds.append(summary)
        self.pending_rounds.append(summary)
        self.step += 1

    def checkpoint(self) -> None:
        """Append the pending log lines, then save the state that counts them (rank 0)."""
        _commit(self.episodes_path, self.pending_eps, self.steps_path, self.pending_rounds)
        kill_point("search.step")  # tests: logs ahead of the checkpoint, as a kill leaves them
        save_checkpoint(
            self.state_path,
            {
                "hparams": self.hp.to_dict(),
                "strategy": self.strategy.name,
                "meta": self.meta,
                "strategy_state": self.strategy.state_dict(),
                "evaluator": self.evaluator.state_dict(),
                "rng": capture_rng_state(),
                # Counts only: the logs themselves are the records (keeps each save small).
                "n_episodes": len(self.episodes),
                "n_rounds": len(self.rounds),
                "best": self.best,
                "step": self.step,
                "stall": self.stall,
                "finished": self.finished,
                # Not part of the search's identity: a resume adds its own segment.
                "elapsed_s": self.previous_s + time.perf_counter() - self.segment_start,
                "segments": self.segments,
            },
        )
        self.pending_eps, self.pending_rounds = [], []

    def report(self, say: Callable[[str], None], new_eps: list[dict[str, Any]]) -> None:
        """A log line every 10 rounds and whenever the best improved (no progress bar)."""
        if not (self.step % 10 == 0 or any(e is self.best for e in new_eps)):
            return
        b = self.best or {}
        say(
            f"search step {self.step}: {self.evaluator.budget.spent:g}/{self.hp.budget} "
            f"evaluations, best reward {b.get('reward', float('nan')):.3f} "
            f"(top1 {b.get('top1', float('nan')):.2f}, {b.get('stages', '-')})"
        )

    def result(self, *, complete: bool) -> LoopResult:
        return LoopResult(
            complete=complete,
            steps=self.step,
            spent=self.evaluator.budget.spent,
            best=self.best,
            episodes=self.episodes,
            rounds=self.rounds,
            resumed_from=self.resumed_from,
            previous_s=self.previous_s,
            segments=self.segments,
        )
