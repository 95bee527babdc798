"""REINFORCE over connection schemes, as the official EAN code does it, plus our extras.

Official: gbup-group/EAN-efficient-attention-network, search_imagent/EAN_search.py (commit
6ae62311; "L<n>" below are its line numbers), run with --validate_size 2 as its
run_code_search_*.py scripts do. All on by default (`--preset ean`); one controller step t:
  * policy (L188-223, L577): a constant zero input z (size 20) -> Linear(20,50) -> ReLU ->
    Linear(50, 2N), divided by the temperature T = 5 (L217; the tanh branch at L220 is dead:
    `mode` is True, never 'train'); slot i's two-way softmax is over columns 2i, 2i+1 (L242),
    index 1 = slot on (get_reward counts '0' bits as sparse, L322);
  * B = 1 + validate_size = 3 schemes a_b per step, each slot drawn independently (L241-256,
    L374-377); rewards R_b = top1 + 2 * fraction off - 54 (L324-325); 300 steps (L81);
  * replay buffer (L114-143, L367): (a, R BEFORE the bonus, p_then = exp(log p(a)) per slot,
    t) is appended at L416, ahead of the bonus; over 30 entries the oldest is dropped;
  * RND bonus (L146-186, L419-422): a fixed net Linear(N,32)-ReLU-Linear(32,32)-ReLU-
    Linear(32,4N) and a learned Linear(N,32)-ReLU-Linear(32,4N);
    e_t = sum over schemes and outputs of (fix(a) - learn(a))^2, ONE number, and
    r_b = R_b + e_t for the online update only;
  * baseline (L424-428): b_1 = mean_b r_b, then b_t = 0.95 b_{t-1} + 0.05 mean_b r_b, taken
    BEFORE the advantages A_b = r_b - b_t (L432);
  * loss (L434-440) = sum_i mean_b -log p_i(a_bi) * A_b; one Adam step (lr 5e-2, L83, L582);
    the learned RND net takes one step of its own Adam (same lr, L581) on e_t (L443-451).
    Adam's lr is constant: the cosine schedule (L373, L510-514) is applied to the frozen
    supernet's optimizer, never to the controller's; controller_grad_clip is 0 (L84);
  * PPO replay (L476-499): from step 10 (0-based) on, after the online update, one buffer
    entry (drawn uniformly, this step's included, L479, L137-143) gives a second Adam step on
    0.1 * -min(S1, S2) (L489), S1 = sum_{i,b} rho_bi log p_i(a_bi) A'_b / B, S2 the same with
    rho clipped to [0.9, 1.1] (L484-487), rho = p_now / p_then per slot (detached, L285, L484),
    A'_b = R_b (stored, without any bonus) - b_t (the current baseline, L481).
Stream conventions (ours; the official code draws from the global CUDA and numpy RNGs): the
schemes are drawn with one torch.multinomial over the [N, 2] probabilities from the
strategy's generator, and the replay entry with torch.randint from the same generator.
Ours (not in the official code), all off under `--preset ean`:
  * `policy=lstm`: an autoregressive LSTM policy (each slot's decision sees the previous);
  * `entropy_weight`: loss -= w * policy entropy (per scheme, summed over slots);
  * `density_weight`/`density_target`: loss += w * (expected keep fraction - target)^2;
  * `rnd_weight` (official 1): scales the bonus added to the rewards (the RND net still
    learns on the unscaled error);
  * the reward's measured-latency term (bench.search.reward), shared by all strategies.
After the search, `preferred_mask` is the policy's argmax (per slot, the more probable
choice), recorded beside the best sampled mask in the ticket's provenance.
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
    """REINFORCE: mean over schemes of -log p(scheme) * advantage.

    logp: [B, N] per-slot log-probabilities (or [B], already summed); adv: [B]. Summed in
    the official order (EAN_search.py L435-440): the mean over schemes per slot, then the
    sum over slots.
    """
    lp = logp if logp.dim() == 2 else logp[:, None]
    return (-lp * adv[:, None]).mean(dim=0).sum()


def ppo_loss(
    logp_slots: torch.Tensor, old_probs: torch.Tensor, adv: torch.Tensor, clip: float
) -> torch.Tensor:
    """The official clipped surrogate (before its weight): -min(S1, S2).

    logp_slots: [B, N] current log-probabilities of the stored actions; old_probs: [B, N]
    their probabilities when sampled; adv: [B]. The ratio is detached, as in the official
    code, so the gradient is ratio * grad log p.
    """
    ratio = (logp_slots.exp() / old_probs).detach()
    b = logp_slots.shape[0]
    col = adv[:, None]
    # As EAN_search.py L484-487: ([N, B] ratio * log p) @ adv [B, 1], summed, / B.
    s1 = (ratio * logp_slots).t().mm(col).sum() / b
    s2 = (ratio.clamp(1 - clip, 1 + clip) * logp_slots).t().mm(col).sum() / b
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

    @torch.no_grad()
    def argmax_mask(self) -> Mask:
        """Per slot the more probable choice (an exact tie goes to off)."""
        return tuple(int(a) for a in self.logits().argmax(dim=-1).tolist())


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
        self,
        b: int,
        actions: torch.Tensor | None = None,
        gen: torch.Generator | None = None,
        greedy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        h = c = torch.zeros(b, self.hidden)
        prev = torch.full((b,), 2, dtype=torch.long)
        acts, logps, keeps, ents = [], [], [], []
        for i in range(self.n):
            h, c = self.cell(self.embed(prev) + self.pos.weight[i], (h, c))
            lp = F.log_softmax(self.head(h) / self.temperature, dim=-1)
            if greedy:
                a = lp.argmax(dim=1)
            elif actions is None:
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

    @torch.no_grad()
    def argmax_mask(self) -> Mask:
        """Greedy decoding: each slot's more probable choice given the greedy choices before."""
        return tuple(int(a) for a in self._run(1, greedy=True)[0][0].tolist())


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
        bonus, rnd_err = self._rnd_bonus(actions)
        train_rewards = [r + bonus for r in rewards]
        self.baseline = ema_baseline(self.baseline, train_rewards, hp.baseline_decay)
        adv_list = advantages(train_rewards, self.baseline)
        adv = torch.tensor(adv_list, dtype=torch.float32)

        logp_slots, keep, entropy = self.policy.evaluate(actions)
        logp = logp_slots.sum(1)
        loss = policy_loss(logp_slots, adv)
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

        # The official buffer holds the rewards BEFORE the RND bonus (stored at L416, the
        # bonus added at L422 to a new array): the replay advantage is R - b_t (L481).
        self.buffer.append(
            {
                "actions": actions,
                "rewards": list(rewards),
                "probs": logp_slots.detach().exp(),
                "step": self.step,
            }
        )
        del self.buffer[: max(0, len(self.buffer) - hp.ppo_buffer)]
        ppo_value = self._ppo_replay() if hp.ppo and self.step >= hp.ppo_start else None
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

    def _rnd_bonus(self, actions: torch.Tensor) -> tuple[float, torch.Tensor | None]:
        """The RND bonus of this step's schemes (one value for all) and the error to train."""
        hp = self.ctx.hp
        if not hp.rnd:
            return 0.0, None
        a = actions.float()
        rnd_err = ((self.rnd_fixed(a) - self.rnd_learned(a)) ** 2).sum()
        return hp.rnd_weight * float(rnd_err.detach()), rnd_err

    def _ppo_replay(self) -> float:
        """One clipped PPO update on a step drawn from the replay buffer; its loss."""
        hp = self.ctx.hp
        pick = self.buffer[int(torch.randint(len(self.buffer), (1,), generator=self.gen))]
        new_logp, _, _ = self.policy.evaluate(pick["actions"])
        old_adv = torch.tensor(advantages(pick["rewards"], self.baseline), dtype=torch.float32)
        ppo = hp.ppo_weight * ppo_loss(new_logp, pick["probs"], old_adv, hp.ppo_clip)
        self.opt.zero_grad(set_to_none=True)
        ppo.backward()
        self.opt.step()
        return float(ppo.detach())

    def step_info(self) -> dict[str, Any]:
        return dict(self._info)

    def keep_probabilities(self) -> list[float]:
        return self.policy.keep_probabilities()

    def preferred_mask(self) -> Mask:
        """The policy's argmax: per slot the more probable choice (lstm: greedy decoding)."""
        return self.policy.argmax_mask()

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
