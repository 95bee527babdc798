"""SimAM (Yang et al. 2021, "SimAM: A Simple, Parameter-Free Attention Module")."""

from __future__ import annotations

import torch
from torch import nn


class SimAM(nn.Module):
    """SimAM: parameter-free 3-D gate sigmoid(1/e*) from each neuron's minimal energy.

    1/e* = (x - mu)^2 / (4 (var + lambda)) + 1/2, with mu and var = sum (x - mu)^2 / (HW - 1)
    taken per sample and channel over space.
    """

    def __init__(self, channels: int | None = None, e_lambda: float = 1e-4) -> None:
        super().__init__()
        del channels  # accepted only for a uniform factory signature; SimAM has no parameters
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = max(x.shape[2] * x.shape[3] - 1, 1)  # 1x1 maps: avoid 0/0, d is 0 there anyway
        d = (x - x.mean(dim=(2, 3), keepdim=True)).pow(2)
        var = d.sum(dim=(2, 3), keepdim=True) / n
        inv_energy = d / (4 * (var + self.e_lambda)) + 0.5
        return x * torch.sigmoid(inv_energy)
