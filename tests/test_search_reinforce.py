"""REINFORCE: reward, baseline and advantage arithmetic by hand; convergence on toy bandits."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from fixtures_search import one_thread_fixture  # noqa: F401  (fixture "one_thread")

from bench.search.budget import Budget
from bench.search.evaluator import Evaluation, Evaluator, TableScorer, mask_key
from bench.search.hparams import SearchHParams
from bench.search.loop import search_loop
from bench.search.reward import Reward
from bench.search.strategies import STRATEGIES, SearchContext
from bench.search.strategies.reinforce import (
    Reinforce,
    advantages,
    ema_baseline,
    policy_loss,
    ppo_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

N = 6
TARGET = (1, 0, 1, 1, 0, 0)


def bandit_table(target: tuple[int, ...] = TARGET) -> dict[str, float]:
    """top1 = 50 + 10 per bit that matches `target`: the best reward is `target` itself
    (the sparsity term adds at most 2, one mismatch costs 10)."""
    return {
        mask_key(m): 50.0 + 10.0 * sum(a == b for a, b in zip(m, target))
        for m in itertools.product((0, 1), repeat=len(target))
    }


def run_bandit(tmp_path: Path, hp: SearchHParams, seed: int = 0, table=None):
    evaluator = Evaluator(TableScorer(table or bandit_table()), Budget(hp.budget, 1))
    ctx = SearchContext(N, (3, 3), hp, seed, known=evaluator.known)
    strategy = STRATEGIES.get("reinforce")(ctx)
    res = search_loop(
        strategy,
        evaluator,
        Reward(),
        hp,
        tmp_path,
        log=lambda _m: None,
        progress=False,
        checkpoint_every=50,  # toy rounds cost microseconds; a checkpoint costs milliseconds
    )
    return strategy, res


def ev(index: int, mask: tuple[int, ...], reward: float) -> Evaluation:
    return Evaluation(index, mask, 0.0, 0.0, 1, False, 1, True, 0, reward)


# --- arithmetic ----------------------------------------------------------------------------


def test_official_reward_formula() -> None:
    r = Reward()  # top1 + 2 * fraction off - 54
    assert r((1, 1, 1, 0, 0, 0, 1, 1, 1), 80.0) == pytest.approx(80 + 2 * 3 / 9 - 54)
    assert r((1,) * 9, 54.0) == 0.0
    assert r((0,) * 4, 10.0) == pytest.approx(10 + 2 - 54)
    # Ours: minus w * (ms the on-slots add / ms of the SAM-free net).
    lat = Reward(latency_weight=5.0, slot_latency_ms=(1.0, 2.0, 3.0), base_latency_ms=10.0)
    parts = lat.parts((1, 0, 1), 70.0)
    assert parts["latency_fraction"] == pytest.approx(0.4)
    assert parts["reward"] == pytest.approx(70 + 2 / 3 - 54 - 5 * 0.4)


def test_baseline_and_advantages_worked_by_hand() -> None:
    b1 = ema_baseline(None, [1.0, 2.0, 3.0], 0.95)  # first step: the mean
    assert b1 == 2.0
    assert advantages([1.0, 2.0, 3.0], b1) == [-1.0, 0.0, 1.0]
    b2 = ema_baseline(b1, [4.0, 5.0, 6.0], 0.95)  # 0.95 * 2 + 0.05 * 5
    assert b2 == pytest.approx(2.15)
    assert advantages([4.0, 5.0, 6.0], b2) == pytest.approx([1.85, 2.85, 3.85])
    logp = torch.tensor([-1.0, -2.0])
    assert float(policy_loss(logp, torch.tensor([3.0, -3.0]))) == pytest.approx(-1.5)


def test_ppo_clip_worked_by_hand() -> None:
    # ratios 0.75/0.5 = 1.5 (clipped to 1.1) and 0.5/0.5 = 1; advantage 2.
    new = torch.log(torch.tensor([[0.75, 0.5]]))
    old = torch.tensor([[0.5, 0.5]])
    loss = ppo_loss(new, old, torch.tensor([2.0]), clip=0.1)
    s1 = 1.5 * 2 * math.log(0.75) + 1.0 * 2 * math.log(0.5)
    s2 = 1.1 * 2 * math.log(0.75) + 1.0 * 2 * math.log(0.5)
    assert float(loss) == pytest.approx(-min(s1, s2))


def test_one_update_matches_hand_computation() -> None:
    hp = SearchHParams(rnd=False, ppo=False)
    s = Reinforce(SearchContext(N, (3, 3), hp, seed=3))
    with torch.no_grad():
        lp = torch.log_softmax(s.policy.logits(), dim=-1)  # [N, 2], index 1 = on
    a, b = (1, 0, 0, 1, 1, 0), (0, 1, 0, 0, 1, 1)
    logp_a = sum(float(lp[i, bit]) for i, bit in enumerate(a))
    logp_b = sum(float(lp[i, bit]) for i, bit in enumerate(b))
    extras = s.tell([a, b], [ev(0, a, 10.0), ev(1, b, 4.0)])
    # First step: baseline = mean 7, advantages +3 / -3.
    assert [x["baseline"] for x in extras] == [7.0, 7.0]
    assert [x["advantage"] for x in extras] == [3.0, -3.0]
    assert extras[0]["logp"] == pytest.approx(logp_a, abs=1e-6)
    assert s.step_info()["loss"] == pytest.approx(-(3 * logp_a - 3 * logp_b) / 2, abs=1e-6)
    # The step moved each slot where a and b differ toward a's choice.
    after = s.policy.keep_probabilities()
    before = lp.exp()[:, 1].tolist()
    for i in range(N):
        if a[i] != b[i]:
            assert (after[i] - before[i]) * (1 if a[i] else -1) > 0


def test_rnd_bonus_is_one_number_per_step() -> None:
    s = Reinforce(SearchContext(N, (3, 3), SearchHParams(ppo=False), seed=0))
    masks = [(1, 0, 1, 0, 1, 0), (0, 0, 0, 1, 1, 1), (1, 1, 1, 1, 1, 1)]
    extras = s.tell(masks, [ev(i, m, float(i)) for i, m in enumerate(masks)])
    bonus = extras[0]["rnd_bonus"]
    assert bonus > 0 and all(x["rnd_bonus"] == bonus for x in extras)
    # It enters the rewards before the baseline: advantages are those of reward + bonus.
    assert [x["advantage"] for x in extras] == pytest.approx([-1.0, 0.0, 1.0])
    assert extras[0]["baseline"] == pytest.approx(1.0 + bonus)
    # The learned RND net was trained on it: the same schemes now give a smaller bonus.
    extras2 = s.tell(masks, [ev(i, m, 0.0) for i, m in enumerate(masks)])
    assert extras2[0]["rnd_bonus"] < bonus


def test_density_prior_pulls_toward_target(tmp_path: Path) -> None:
    # Flat rewards: REINFORCE has nothing to learn, so only the prior moves the policy.
    flat = {k: 60.0 for k in bandit_table()}
    hp = SearchHParams(
        steps=60, budget=1000, rnd=False, ppo=False, density_target=0.1, density_weight=50.0
    )
    strategy, _ = run_bandit(tmp_path, hp, table=flat)
    assert sum(strategy.keep_probabilities()) / N < 0.2


def test_entropy_bonus_enters_the_loss() -> None:
    hp = SearchHParams(rnd=False, ppo=False, entropy_weight=0.5)
    s = Reinforce(SearchContext(N, (3, 3), hp, seed=1))
    with torch.no_grad():
        p = torch.softmax(s.policy.logits(), dim=-1)
        entropy = float(-(p * p.log()).sum())
    m = (1, 1, 1, 0, 0, 0)
    s.tell([m, m], [ev(0, m, 5.0), ev(1, m, 5.0)])  # advantages 0: loss = -w * H
    assert s.step_info()["loss"] == pytest.approx(-0.5 * entropy, abs=1e-6)


# --- convergence ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy,steps", [("mlp", 300), ("lstm", 300)])
def test_reinforce_finds_the_known_best_mask(tmp_path: Path, policy: str, steps: int) -> None:
    hp = SearchHParams(steps=steps, budget=10_000, policy=policy)  # official controller
    strategy, res = run_bandit(tmp_path, hp, seed=0)
    keep = strategy.keep_probabilities()
    assert tuple(int(p > 0.5) for p in keep) == TARGET
    assert min(abs(p - 0.5) for p in keep) > 0.4  # converged, not just leaning
    assert res.best["mask"] == mask_key(TARGET)
    # The cache served every repeat: far fewer evaluations than samples drawn.
    assert res.spent < steps * hp.samples_per_step / 4
