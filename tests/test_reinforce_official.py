"""Our REINFORCE controller against the official EAN update, written out here independently.

The official update (gbup-group/EAN-efficient-attention-network, search_imagent/EAN_search.py
at commit 6ae62311, "L<n>" = its lines) is re-implemented below in plain torch and numpy from
its equations: MLP controller, temperature-5 two-way softmaxes, EMA baseline, RND bonus, PPO
replay of rewards stored BEFORE the bonus. Both sides start from the same seeds, draw from
the same generator in our stream convention (one multinomial over the [N, 2] probabilities
per step, one randint per replay pick; the official code uses the global CUDA and numpy
RNGs, which no CPU run can reproduce), see the same rewards, and must agree to 1e-6 over
the official 300 steps.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_search import DATASET, MODEL, TINY, one_thread_fixture  # noqa: F401  (fixture)
from torch import nn

from bench.engine.checkpoint import load_checkpoint
from bench.models.resnet import ModelConfig
from bench.search.budget import Budget
from bench.search.evaluator import Evaluation, Evaluator, TableScorer, mask_key
from bench.search.hparams import SearchHParams, resolve_preset
from bench.search.loop import STATE_FILE, one_thread, search_loop
from bench.search.reward import Reward
from bench.search.run import run_search
from bench.search.strategies import SearchContext
from bench.search.strategies.base import derived_seed
from bench.search.strategies.reinforce import Reinforce
from bench.search.ticket_out import policy_preference, write_ticket
from bench.ticket.schema import load_ticket, mask_to_stages
from bench.util.io import read_json

pytestmark = pytest.mark.usefixtures("one_thread")

STAGES = (3, 4, 6, 3)  # ResNet-50, as the official search (L86-88)
N = sum(STAGES)
STEPS = 300
SEED = 5
CHECK_AT = (1, 10, 11, 12, 50, 150, 300)  # after these many steps (PPO from the 11th)
TARGET = (1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0)


def top1(mask: tuple[int, ...]) -> float:
    """A fixed score per mask: 60 + 1.5 per bit matching TARGET + a hash-derived [0, 1)."""
    h = hashlib.sha256(mask_key(mask).encode()).digest()
    return 60.0 + 1.5 * sum(a == b for a, b in zip(mask, TARGET)) + h[0] / 256


def official_reward(mask: tuple[int, ...]) -> float:
    """R = val_acc + 2 * sparse_portion - 54 (L322-325)."""
    sparse = sum(b == 0 for b in mask) / len(mask)
    return top1(mask) + sparse * 2 - 54.0


# --------------------------------------------------------------------------- the official side


def official_search(steps: int, *, bonus_in_buffer: bool = False) -> dict:
    """The official controller loop (L341-499) with our seeds and stream convention.

    bonus_in_buffer: store the rewards WITH the RND bonus (our old, wrong variant).
    Returns the masks drawn per step and snapshots (logits, flat parameters) at CHECK_AT.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(SEED, "reinforce-init"))
        # Controller (L203-211), RND_fix (L156-162), RND_learn (L178-182), built in the
        # official order (L577-579).
        controller = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 2 * N))
        rnd_fix = nn.Sequential(
            nn.Linear(N, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4 * N)
        )
        rnd_learn = nn.Sequential(nn.Linear(N, 32), nn.ReLU(), nn.Linear(32, 4 * N))
    gen = torch.Generator().manual_seed(derived_seed(SEED, "reinforce"))
    rnd_learn_optim = torch.optim.Adam(rnd_learn.parameters(), lr=5e-2)  # L581
    controller_optim = torch.optim.Adam(controller.parameters(), lr=5e-2)  # L582
    buffer: list[tuple[torch.Tensor, np.ndarray, torch.Tensor]] = []  # ReplayBuffer(30)
    baseline = None
    masks, snaps = [], {}

    def logits() -> torch.Tensor:
        # L214-217: fc(zeros) / 5; slot i = columns 2i, 2i+1 (L242).
        return (controller(torch.zeros(1, 20)) / 5.0).view(N, 2)

    for step in range(steps):
        log_prob = F.log_softmax(logits(), dim=-1)  # [N, 2]
        probs = F.softmax(logits(), dim=-1).detach()
        actions = torch.multinomial(probs, 3, replacement=True, generator=gen).t().contiguous()
        log_probs = log_prob.gather(1, actions.t()).t()  # [B, N], L250-254
        masks.append([tuple(int(b) for b in row) for row in actions.tolist()])
        rewards = np.vstack([[official_reward(m)] for m in masks[-1]])  # [B, 1] float64
        buf_prob = torch.exp(log_probs).detach()  # L410-412

        rnd_err = ((rnd_fix(actions.float()) - rnd_learn(actions.float())) ** 2).sum()  # L421
        stored = rewards + rnd_err.detach().numpy() if bonus_in_buffer else rewards
        buffer.append((actions, stored, buf_prob))  # L416
        if len(buffer) > 30:  # L131-135
            buffer.pop(0)
        rewards = rewards + rnd_err.detach().numpy()  # L422: a new array
        if baseline is None:  # L424-428
            baseline = rewards.mean()
        else:
            baseline = 0.95 * baseline + (1 - 0.95) * rewards.mean()
        adv = torch.Tensor(rewards - baseline)  # L432, float32 as tools.get_variable
        loss = (-log_probs * adv).mean(dim=0, keepdim=True).sum()  # L435-440
        controller_optim.zero_grad()  # L443-451
        rnd_learn_optim.zero_grad()
        loss.backward()
        rnd_err.mean().backward()
        rnd_learn_optim.step()
        controller_optim.step()

        if step >= 10:  # L476-499
            pick = int(torch.randint(len(buffer), (1,), generator=gen))
            r_actions, r_rewards, r_probs = buffer[pick]
            lp_now = F.log_softmax(logits(), dim=-1)
            sel = lp_now.gather(1, r_actions.t())  # [N, B] (L283, concatenated on dim 0)
            ratio = torch.exp(sel) / r_probs.t()  # L284-285
            adv = torch.Tensor(r_rewards - baseline)  # L481, [B, 1]
            b = r_actions.shape[0]
            surr1 = (ratio.detach() * sel).mm(adv).sum() / b  # L484-487
            surr2 = (torch.clamp(ratio.detach(), 1 - 0.1, 1 + 0.1) * sel).mm(adv).sum() / b
            loss = 0.1 * -torch.min(surr1, surr2)  # L489
            controller_optim.zero_grad()
            loss.backward()
            controller_optim.step()
        if step + 1 in CHECK_AT:
            with torch.no_grad():
                snaps[step + 1] = (
                    logits().clone(),
                    torch.cat([p.detach().flatten() for p in controller.parameters()]),
                    torch.cat([p.detach().flatten() for p in rnd_learn.parameters()]),
                )
    return {"masks": masks, "snaps": snaps}


# --------------------------------------------------------------------------- our side


def ours_search(steps: int, hp: SearchHParams | None = None) -> dict:
    """Our strategy driven by ask/tell, told the official side's reward of each mask (the
    same numbers; bench.search.reward's formula is checked in test_search_reinforce)."""
    hp = hp or resolve_preset("ean", "imagenet").search
    s = Reinforce(SearchContext(N, STAGES, hp, SEED))
    masks, snaps = [], {}
    for step in range(steps):
        asked = s.ask()
        results = [
            Evaluation(i, m, top1(m), 0.0, 1, False, 1, True, 0, official_reward(m))
            for i, m in enumerate(asked)
        ]
        s.tell(asked, results)
        masks.append(list(asked))
        if step + 1 in CHECK_AT:
            with torch.no_grad():
                snaps[step + 1] = (
                    s.policy.logits().clone(),
                    torch.cat([p.detach().flatten() for p in s.policy.parameters()]),
                    torch.cat([p.detach().flatten() for p in s.rnd_learned.parameters()]),
                )
    return {"masks": masks, "snaps": snaps, "strategy": s}


def max_diff(a: dict, b: dict, at: int) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a["snaps"][at], b["snaps"][at]))


@pytest.fixture(scope="module")
def runs() -> dict:
    with one_thread():
        return {
            "ours": ours_search(STEPS),
            "official": official_search(STEPS),
            "bonus_in_buffer": official_search(STEPS, bonus_in_buffer=True),
        }


def test_ean_preset_is_the_official_controller() -> None:
    hp = resolve_preset("ean", "imagenet").search
    assert (hp.steps, hp.samples_per_step, hp.policy, hp.temperature) == (300, 3, "mlp", 5.0)
    assert (hp.controller_lr, hp.baseline_decay, hp.rnd, hp.rnd_weight) == (5e-2, 0.95, True, 1)
    assert (hp.ppo, hp.ppo_buffer, hp.ppo_clip, hp.ppo_weight, hp.ppo_start) == (
        True,
        30,
        0.1,
        0.1,
        10,
    )
    assert (hp.entropy_weight, hp.density_weight, hp.latency_weight) == (0, 0, 0)
    assert (hp.reward_offset, hp.sparsity_weight) == (54.0, 2.0)


def test_same_initial_weights() -> None:
    s = Reinforce(SearchContext(N, STAGES, resolve_preset("ean", "imagenet").search, SEED))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(SEED, "reinforce-init"))
        controller = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 2 * N))
    for p, q in zip(s.policy.parameters(), controller.parameters()):
        assert torch.equal(p, q)


def test_ours_equals_the_official_update_over_300_steps(runs: dict) -> None:
    ours, official = runs["ours"], runs["official"]
    assert len(ours["masks"]) == len(official["masks"]) == STEPS
    assert ours["masks"] == official["masks"]
    for at in CHECK_AT:
        assert max_diff(ours, official, at) < 1e-6, at
    # The search learned something (the check is not of a frozen policy).
    keep = ours["strategy"].keep_probabilities()
    assert sum(abs(p - 0.5) for p in keep) / N > 0.3


def test_storing_the_bonus_in_the_buffer_is_detected(runs: dict) -> None:
    ours, wrong = runs["ours"], runs["bonus_in_buffer"]
    # Identical until the first replay (step 10), different after it.
    assert max_diff(ours, wrong, 10) < 1e-6
    assert max_diff(ours, wrong, 11) > 1e-6
    assert max_diff(ours, wrong, STEPS) > 1e-6


# --------------------------------------------------------------------------- the argmax


def test_argmax_mask_follows_the_logits(runs: dict) -> None:
    s = runs["ours"]["strategy"]
    with torch.no_grad():
        lg = s.policy.logits()
    want = tuple(int(lg[i, 1] > lg[i, 0]) for i in range(N))
    assert s.preferred_mask() == want
    assert want == tuple(int(p > 0.5) for p in s.keep_probabilities())
    # LSTM: greedy decoding gives a mask; strategies without a policy give none.
    lstm = Reinforce(SearchContext(N, STAGES, SearchHParams(policy="lstm"), 0))
    assert len(lstm.preferred_mask()) == N and set(lstm.preferred_mask()) <= {0, 1}


def test_ticket_records_the_policy_argmax(tmp_path: Path) -> None:
    """A toy search through the loop; the ticket file carries the argmax and its score."""
    n, stages = 9, (3, 3, 3)
    target = (1, 0, 1, 1, 0, 0, 1, 1, 0)
    table = {
        mask_key(m): 50.0 + 5.0 * sum(a == b for a, b in zip(m, target))
        for m in (tuple((k >> (n - 1 - i)) & 1 for i in range(n)) for k in range(2**n))
    }
    hp = SearchHParams(steps=12, budget=1000)
    scorer = TableScorer(table)
    evaluator = Evaluator(scorer, Budget(hp.budget, 1))
    strategy = Reinforce(SearchContext(n, stages, hp, 0, known=evaluator.known))
    reward = Reward()
    res = search_loop(
        strategy, evaluator, reward, hp, tmp_path / "run", log=lambda _m: None, progress=False
    )
    spent = evaluator.budget.spent
    pref = policy_preference(strategy, evaluator, reward, stages)
    assert evaluator.budget.spent == spent  # scoring the argmax is not charged
    best_mask = tuple(int(b) for b in res.best["mask"])
    config = ModelConfig("resnet20", "se")
    ticket, path = write_ticket(
        tmp_path, "toy", config, best_mask, {**_required_provenance(), **pref}
    )
    loaded = load_ticket(path)
    assert loaded.mask == best_mask and loaded.checksum == ticket.checksum
    got = loaded.provenance["policy_argmax"]
    # Recomputed from the controller's logits, scored by the same table and reward.
    with torch.no_grad():
        lg = strategy.policy.logits()
    argmax = tuple(int(lg[i, 1] > lg[i, 0]) for i in range(n))
    assert got["mask"] == mask_key(argmax)
    assert got["stages"] == mask_to_stages(argmax, stages)
    assert got["top1"] == table[mask_key(argmax)]
    assert got["reward"] == pytest.approx(reward(argmax, table[mask_key(argmax)]))
    assert got["sampled"] == any(e["mask"] == got["mask"] for e in res.episodes)
    # Extras do not enter the checksum: the identity fields alone do.
    bare, _ = write_ticket(tmp_path / "bare", "toy", config, best_mask, _required_provenance())
    assert bare.checksum == ticket.checksum


def _required_provenance() -> dict:
    fields = ("dataset", "split", "run", "strategy", "config_hash", "seed")
    return dict(zip(fields, ("toy", {}, "r", "reinforce", "x", 0)))


def test_real_search_ticket_carries_the_policy_argmax(
    tmp_path: Path, search_fmnist_root: Path, search_supernet_runs: Path
) -> None:
    """A tiny real search (the session's supernet): provenance and result.json record the
    argmax of the final controller, as its checkpointed logits give it."""
    out = tmp_path / "runs"
    shutil.copytree(search_supernet_runs, out)
    path, run_dir = run_search(
        DATASET, MODEL, out_root=out, data_root=search_fmnist_root, iters=4, budget=12, **TINY
    )
    prov = load_ticket(path).provenance
    got = prov["policy_argmax"]
    state = load_checkpoint(run_dir / STATE_FILE)
    hp = resolve_preset(
        "short",
        DATASET,
        iters=4,
        budget=12,
        search=TINY["search_overrides"],
        supernet=TINY["supernet_overrides"],
        sampler=TINY["sampler_overrides"],
    ).search
    s = Reinforce(SearchContext(9, (3, 3, 3), hp, 0))
    s.load_state_dict(state["strategy_state"])
    with torch.no_grad():
        lg = s.policy.logits()
    argmax = tuple(int(lg[i, 1] > lg[i, 0]) for i in range(9))
    assert got["mask"] == mask_key(argmax)
    assert got["reward"] == pytest.approx(got["top1"] + 2 * argmax.count(0) / 9 - 54)
    assert 0 <= got["top1"] <= 100 and isinstance(got["sampled"], bool)
    assert read_json(run_dir / "result.json")["policy_argmax"] == got
