"""Spatial Group-wise Enhance (Li et al. 2019, "Spatial Group-wise Enhance: ...")."""

from __future__ import annotations

import math

import torch
from torch import nn


class SGE(nn.Module):
    """SGE: per group, similarity of each position to the group's mean feature gates that position.

    As the official code: EAN's forward_config_share_sge_fbresnet.py
    (search_imagent/imagenet_network/, class SpatialGroupEnhance, lines 25-48; the copy under
    train_imagenet/ is the same), per sample and group of C/G channels x_k over H*W positions:
        t = sum_k x_k * mean_hw(x_k)                        similarity map (lines 36-39)
        t = t - mean_hw(t)                                  (line 40)
        t = t / (std_hw(t) + 1e-5)  std UNBIASED (HW - 1), eps outside the root (lines 41-42)
        out = x * sigmoid(weight_g * t + bias_g)            (lines 43-48)
    The one departure: with a 1x1 map the centred t is 0 and the official unbiased std is NaN
    (0 / NaN); we keep t = 0 (its value for any finite std), i.e. the gate sigmoid(bias_g).

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
        # Official init: weight 0, bias 1, so the block starts as a uniform gate sigmoid(1).
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
        if h * w > 1:  # 1x1: sim is exactly 0 and stays so (official: NaN, see docstring)
            sim = sim / (sim.std(dim=2, keepdim=True, unbiased=True) + self.eps)
        gate = torch.sigmoid(sim.reshape(b, g, h, w) * self.weight + self.bias)
        return (xg * gate.reshape(b * g, 1, h, w)).reshape(b, c, h, w)
