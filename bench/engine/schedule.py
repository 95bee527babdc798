"""SGD and the learning-rate schedule: linear warm-up, then step or cosine, per iteration.

The schedule is a pure function of the global step, so resuming needs only the step count
(no scheduler object state to drift).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bench.engine.hparams import TrainHParams

__all__ = ["LRSchedule", "build_optimizer", "lr_factor"]


def lr_factor(step: int, hp: TrainHParams, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based).

    Warm-up: step s < W uses (s + 1) / W, reaching 1 on the last warm-up step.
    step: gamma ** (number of milestones m with s >= m * steps_per_epoch), times warm-up.
    cosine: after warm-up, 0.5 * (1 + cos(pi * (s - W) / (T - W))), so it starts at 1 and
    approaches 0 at T (the total step count; the last step taken is T - 1).
    """
    if steps_per_epoch < 1:
        raise ValueError("steps_per_epoch must be >= 1")
    warmup = hp.warmup_epochs * steps_per_epoch
    total = hp.epochs * steps_per_epoch
    warm = (step + 1) / warmup if step < warmup else 1.0
    if hp.schedule == "step":
        drops = sum(step >= m * steps_per_epoch for m in hp.milestones)
        return warm * hp.gamma**drops
    if step < warmup:
        return warm
    if total <= warmup:  # all warm-up: nothing left to anneal
        return 1.0
    t = min(step - warmup, total - warmup) / (total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(model: nn.Module, hp: TrainHParams) -> torch.optim.SGD:
    """SGD over the trainable parameters; with `decay_norm_and_bias=False`, 1-d parameters
    (BN/LayerNorm weights and biases, all biases) go to a group without weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if hp.decay_norm_and_bias or hp.weight_decay == 0:
        groups: list[dict[str, Any]] = [{"params": params, "weight_decay": hp.weight_decay}]
    else:
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [
            {"params": decay, "weight_decay": hp.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
    return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=hp.nesterov)


class LRSchedule:
    """Sets every param group's lr to its peak lr times `lr_factor(step)` before a step.

    The peak lr lives in each group's "initial_lr" (saved with the optimizer state).
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, hp: TrainHParams, steps_per_epoch: int
    ) -> None:
        self.optimizer = optimizer
        self.hp = hp
        self.steps_per_epoch = steps_per_epoch
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def factor(self, step: int) -> float:
        return lr_factor(step, self.hp, self.steps_per_epoch)

    def apply(self, step: int) -> float:
        """Set the lr for optimizer step `step`; return the first group's lr."""
        f = self.factor(step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # A pure function of the step: only check that the epoch length still matches.
        if state.get("steps_per_epoch") != self.steps_per_epoch:
            raise ValueError(
                f"schedule was built for {state.get('steps_per_epoch')} steps per epoch, "
                f"now {self.steps_per_epoch} (different dataset, batch size or world size?)"
            )
