"""REINFORCE over connection schemes, as the official EAN code does it, plus our extras.

Official (gbup-group/EAN-efficient-attention-network, search_imagent/EAN_search.py), all on
by default (`--preset ean`):
  * policy: a constant zero input (size 20) -> Linear(20,50) -> ReLU -> Linear(50, 2N),
    divided by the temperature 5; N independent two-way softmaxes, index 1 = slot on;
  * 3 schemes per step, 300 steps; Adam lr 5e-2, constant (the official cosine schedule is
    applied to the frozen supernet's optimizer, never to the controller's);
  * RND bonus: a fixed random net Linear(N,32)-ReLU-Linear(32,32)-ReLU-Linear(32,4N) and a
    learned Linear(N,32)-ReLU-Linear(32,4N); bonus = summed squared error over the step's
    schemes, ONE number added to every reward of the step; the learned net is trained on it
    (its own Adam, same lr);
  * baseline: the first step's mean reward, then b = 0.95 b + 0.05 mean(step rewards),
    updated BEFORE the advantages r - b are taken;
  * loss = mean over schemes of -(sum over slots of log p) * advantage;
  * PPO replay: every step's schemes, rewards and per-slot chosen-action probabilities go
    to a buffer of the last 30 steps; from step 10 on, after the REINFORCE update, one
    buffer entry (drawn uniformly, this step's included) gives a second update with loss
    0.1 * -min(S1, S2), S1 = sum(ratio * log p * adv) / schemes, S2 the same with the ratio
    clipped to [0.9, 1.1], ratio = p_now / p_then per slot (detached), adv = its rewards
    minus the current baseline.
Ours (not in the official code), off by default:
  * `policy=lstm`: an autoregressive LSTM policy (each slot's decision sees the previous);
  * `entropy_weight`: loss -= w * policy entropy (per scheme, summed over slots);
  * `density_weight`/`density_target`: loss += w * (expected keep fraction - target)^2;
  * the reward's measured-latency term (bench.search.reward), shared by all strategies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.search.evaluator import Evaluation, Mask
from bench.search.strategies.base import STRATEGIES, SearchContext, Strategy, derived_seed

__all__ = [
    "LSTMPolicy",
    "MLPPolicy",
    "Reinforce",
    "advantages",
    "ema_baseline",
    "policy_loss",
    "ppo_loss",
]


# --------------------------------------------------------------------------- arithmetic


def ema_baseline(previous: float | None, rewards: Sequence[float], decay: float) -> float:
    """The official moving-average baseline after a step with these rewards."""
    mean = sum(rewards) / len(rewards)
    return mean if previous is None else decay * previous + (1.0 - decay) * mean


def advantages(rewards: Sequence[float], baseline: float) -> list[float]:
    return [r - baseline for r in rewards]


def policy_loss(logp: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """REINFORCE: mean over schemes of -log p(scheme) * advantage. logp, adv: [B]."""
    return -(logp * adv).mean()


def ppo_loss(
    logp_slots: torch.Tensor, old_probs: torch.Tensor, adv: torch.Tensor, clip: float
) -> torch.Tensor:
    """The official clipped surrogate (before its weight): -min(S1, S2).

    logp_slots: [B, N] current log-probabilities of the stored actions; old_probs: [B, N]
    their probabilities when sampled; adv: [B]. The ratio is detached, as in the official
    code, so the gradient is ratio * grad log p.
    """
    ratio = (logp_slots.exp() / old_probs).detach()
    weighted = logp_slots * adv[:, None]
    b = logp_slots.shape[0]
    s1 = (ratio * weighted).sum() / b
    s2 = (ratio.clamp(1 - clip, 1 + clip) * weighted).sum() / b
    return -torch.min(s1, s2)


# --------------------------------------------------------------------------- policies


class MLPPolicy(nn.Module):
    """The official controller: N independent two-way softmaxes from a constant input."""

    input_size = 20
    hidden = 50

    def __init__(self, n: int, temperature: float) -> None:
        super().__init__()
        self.n, self.temperature = n, temperature
        self.fc = nn.Sequential(
            nn.Linear(self.input_size, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 2 * n)
        )

    def logits(self) -> torch.Tensor:
        """[N, 2] tempered logits (index 1 = slot on)."""
        z = torch.zeros(1, self.input_size)
        return (self.fc(z) / self.temperature).view(self.n, 2)

    @torch.no_grad()
    def sample(self, b: int, gen: torch.Generator) -> torch.Tensor:
        probs = F.softmax(self.logits(), dim=-1)
        return torch.multinomial(probs, b, replacement=True, generator=gen).t()

    def evaluate(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log p of each chosen action [B, N], keep probability [B, N], entropy [B])."""
        logp_all = F.log_softmax(self.logits(), dim=-1)
        b = actions.shape[0]
        logp = logp_all.unsqueeze(0).expand(b, -1, -1).gather(2, actions.unsqueeze(2)).squeeze(2)
        p = logp_all.exp()
        keep = p[:, 1].unsqueeze(0).expand(b, -1)
        entropy = -(p * logp_all).sum().expand(b)
        return logp, keep, entropy

    @torch.no_grad()
    def keep_probabilities(self) -> list[float]:
        return F.softmax(self.logits(), dim=-1)[:, 1].tolist()


class LSTMPolicy(nn.Module):
    """Ours: slot i's decision conditions on slots 0..i-1 through an LSTM cell."""

    def __init__(self, n: int, temperature: float, hidden: int = 64) -> None:
        super().__init__()
        self.n, self.temperature, self.hidden = n, temperature, hidden
        self.embed = nn.Embedding(3, hidden)  # previous action 0 / 1, or 2 = start
        self.pos = nn.Embedding(n, hidden)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.head = nn.Linear(hidden, 2)

    def _run(
        self, b: int, actions: torch.Tensor | None = None, gen: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = c = torch.zeros(b, self.hidden)
        prev = torch.full((b,), 2, dtype=torch.long)
        acts, logps, keeps, ents = [], [], [], []
        for i in range(self.n):
            h, c = self.cell(self.embed(prev) + self.pos.weight[i], (h, c))
            lp = F.log_softmax(self.head(h) / self.temperature, dim=-1)
            if actions is None:
                a = torch.multinomial(lp.exp(), 1, generator=gen).squeeze(1)
            else:
                a = actions[:, i]
            acts.append(a)
            logps.append(lp.gather(1, a[:, None]).squeeze(1))
            keeps.append(lp[:, 1].exp())
            ents.append(-(lp.exp() * lp).sum(1))
            prev = a
        return (
            torch.stack(acts, 1),
            torch.stack(logps, 1),
            torch.stack(keeps, 1),
            torch.stack(ents, 1).sum(1),
        )

    @torch.no_grad()
    def sample(self, b: int, gen: torch.Generator) -> torch.Tensor:
        return self._run(b, gen=gen)[0]

    def evaluate(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, logp, keep, entropy = self._run(actions.shape[0], actions)
        return logp, keep, entropy

    @torch.no_grad()
    def keep_probabilities(self, samples: int = 64) -> list[float]:
        """Monte-Carlo marginals from a fixed generator (the search's stream is untouched)."""
        acts = self._run(samples, gen=torch.Generator().manual_seed(0))[0]
        return acts.double().mean(0).tolist()


def _rnd_nets(n: int) -> tuple[nn.Module, nn.Module]:
    fixed = nn.Sequential(
        nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4 * n)
    )
    learned = nn.Sequential(nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, 4 * n))
    fixed.requires_grad_(False)
    return fixed, learned


# --------------------------------------------------------------------------- the strategy


@STRATEGIES.register("reinforce")
class Reinforce(Strategy):
    name = "reinforce"

    def __init__(self, ctx: SearchContext) -> None:
        super().__init__(ctx)
        hp = ctx.hp
        # Initial weights from the seed, without touching the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(ctx.seed, "reinforce-init"))
            if hp.policy == "lstm":
                self.policy: MLPPolicy | LSTMPolicy = LSTMPolicy(
                    self.n, hp.temperature, hp.lstm_hidden
                )
            else:
                self.policy = MLPPolicy(self.n, hp.temperature)
            self.rnd_fixed, self.rnd_learned = _rnd_nets(self.n)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=hp.controller_lr)
        self.rnd_opt = torch.optim.Adam(self.rnd_learned.parameters(), lr=hp.controller_lr)
        self.baseline: float | None = None
        self.step = 0
        self.buffer: list[dict[str, Any]] = []
        self._info: dict[str, Any] = {}

    def ask(self) -> list[Mask]:
        if self.step >= self.ctx.hp.steps:
            return []
        actions = self.policy.sample(self.ctx.hp.samples_per_step, self.gen)
        return [tuple(int(b) for b in row) for row in actions.tolist()]

    def tell(self, asked: Sequence[Mask], results: Sequence[Evaluation]) -> list[dict[str, Any]]:
        if not results:
            return []
        hp = self.ctx.hp
        actions = torch.tensor([list(r.mask) for r in results], dtype=torch.long)
        rewards = [r.reward for r in results]
        bonus = 0.0
        rnd_err = None
        if hp.rnd:
            a = actions.float()
            rnd_err = ((self.rnd_fixed(a) - self.rnd_learned(a)) ** 2).sum()
            bonus = hp.rnd_weight * float(rnd_err.detach())
        train_rewards = [r + bonus for r in rewards]
        self.baseline = ema_baseline(self.baseline, train_rewards, hp.baseline_decay)
        adv_list = advantages(train_rewards, self.baseline)
        adv = torch.tensor(adv_list, dtype=torch.float32)

        logp_slots, keep, entropy = self.policy.evaluate(actions)
        logp = logp_slots.sum(1)
        loss = policy_loss(logp, adv)
        if hp.entropy_weight > 0:
            loss = loss - hp.entropy_weight * entropy.mean()
        if hp.density_weight > 0:
            loss = loss + hp.density_weight * (keep.mean() - hp.density_target) ** 2
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if rnd_err is not None:
            self.rnd_opt.zero_grad(set_to_none=True)
            rnd_err.backward()
            self.rnd_opt.step()

        self.buffer.append(
            {
                "actions": actions,
                "rewards": list(train_rewards),
                "probs": logp_slots.detach().exp(),
                "step": self.step,
            }
        )
        del self.buffer[: max(0, len(self.buffer) - hp.ppo_buffer)]
        ppo_value = None
        if hp.ppo and self.step >= hp.ppo_start:
            pick = self.buffer[int(torch.randint(len(self.buffer), (1,), generator=self.gen))]
            new_logp, _, _ = self.policy.evaluate(pick["actions"])
            old_adv = torch.tensor(advantages(pick["rewards"], self.baseline), dtype=torch.float32)
            ppo = hp.ppo_weight * ppo_loss(new_logp, pick["probs"], old_adv, hp.ppo_clip)
            self.opt.zero_grad(set_to_none=True)
            ppo.backward()
            self.opt.step()
            ppo_value = float(ppo.detach())
        self._info = {
            "loss": float(loss.detach()),
            "baseline": self.baseline,
            "rnd_bonus": bonus,
            "ppo_loss": ppo_value,
            "entropy": float(entropy.detach().mean()),
        }
        self.step += 1
        return [
            {
                "logp": float(lp),
                "baseline": self.baseline,
                "advantage": a,
                "rnd_bonus": bonus,
            }
            for lp, a in zip(logp.detach().tolist(), adv_list)
        ]

    def step_info(self) -> dict[str, Any]:
        return dict(self._info)

    def keep_probabilities(self) -> list[float]:
        return self.policy.keep_probabilities()

    def _state(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "opt": self.opt.state_dict(),
            "rnd_fixed": self.rnd_fixed.state_dict(),
            "rnd_learned": self.rnd_learned.state_dict(),
            "rnd_opt": self.rnd_opt.state_dict(),
            "baseline": self.baseline,
            "step": self.step,
            "buffer": self.buffer,
            "info": self._info,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.opt.load_state_dict(state["opt"])
        self.rnd_fixed.load_state_dict(state["rnd_fixed"])
        self.rnd_learned.load_state_dict(state["rnd_learned"])
        self.rnd_opt.load_state_dict(state["rnd_opt"])
        self.baseline = state["baseline"]
        self.step = int(state["step"])
        self.buffer = list(state["buffer"])
        self._info = dict(state["info"])
