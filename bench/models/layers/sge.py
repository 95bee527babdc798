"""Spatial Group-wise Enhance (Li et al. 2019, "Spatial Group-wise Enhance: ...")."""

from __future__ import annotations

import math

import torch
from torch import nn


class SGE(nn.Module):
    """SGE: per group, similarity of each position to the group's mean feature gates that position.

    The channels are split into G = gcd(channels, groups) groups, so that any channel count works
    (G == groups whenever groups divides channels; e.g. 16 channels with groups 64 gives G = 16).
    Parameters: weight zeros(1, G, 1, 1) and bias ones(1, G, 1, 1), i.e. 2G in total.
    """

    def __init__(self, channels: int, groups: int = 64, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups = math.gcd(channels, groups)
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(1, self.groups, 1, 1))
        self.bias = nn.Parameter(torch.empty(1, self.groups, 1, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Paper init: weight 0, bias 1, so the block starts as a uniform gate sigmoid(1).
        nn.init.zeros_(self.weight)
        nn.init.ones_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = self.groups
        xg = x.reshape(b * g, c // g, h, w)
        # Importance of each position: dot product with the group's global (average) feature.
        sim = (xg * xg.mean(dim=(2, 3), keepdim=True)).sum(dim=1, keepdim=True)  # (B*G, 1, H, W)
        sim = sim.reshape(b, g, h * w)
        # Normalise over space per sample and group so the learned scale/shift are comparable.
        sim = sim - sim.mean(dim=2, keepdim=True)
        sim = sim / (sim.var(dim=2, keepdim=True, unbiased=False) + self.eps).sqrt()
        gate = torch.sigmoid(sim.reshape(b, g, h, w) * self.weight + self.bias)
        return (xg * gate.reshape(b * g, 1, h, w)).reshape(b, c, h, w)
