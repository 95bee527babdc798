"""Gated Channel Transformation (Yang et al. 2020, "Gated Channel Transformation for ...")."""

from __future__ import annotations

import torch
from torch import nn


class GCT(nn.Module):
    """GCT: l2 (or l1) global context embedding, channel normalisation, gate 1 + tanh(.).

    Parameters alpha (ones), gamma and beta (zeros), each (1, C, 1, 1): 3C in total. With
    gamma = beta = 0 at init the gate is exactly 1, so the module starts as the identity.
    """

    def __init__(self, channels: int, mode: str = "l2", eps: float = 1e-5) -> None:
        super().__init__()
        if mode not in ("l2", "l1"):
            raise ValueError(f"GCT mode must be 'l2' or 'l1', not {mode!r}")
        self.mode = mode
        self.eps = eps
        self.alpha = nn.Parameter(torch.empty(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.empty(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.empty(1, channels, 1, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Paper init: gate 1 + tanh(0) == 1, so inserting GCT leaves a pretrained net unchanged.
        nn.init.ones_(self.alpha)
        nn.init.zeros_(self.gamma)
        nn.init.zeros_(self.beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "l2":
            emb = self.alpha * (x.pow(2).sum(dim=(2, 3), keepdim=True) + self.eps).sqrt()
            # sqrt(C) * s / ||s||_2 == s / rms(s): channels compete on a unit-rms scale.
            norm = self.gamma / (emb.pow(2).mean(dim=1, keepdim=True) + self.eps).sqrt()
        else:
            emb = self.alpha * x.abs().sum(dim=(2, 3), keepdim=True)
            # C * s / ||s||_1; abs() because alpha may turn negative during training.
            norm = self.gamma / (emb.abs().mean(dim=1, keepdim=True) + self.eps)
        return x * (1.0 + torch.tanh(emb * norm + self.beta))
