"""Style-based Recalibration Module (Lee et al. 2019, "SRM: A Style-based Recalibration Module")."""

from __future__ import annotations

import torch
from torch import nn


class SRM(nn.Module):
    """SRM: per-channel (mean, std) style pooling -> channel-wise FC -> BN -> sigmoid gate.

    Parameters: 2C for the channel-wise FC (no bias; the BN shift plays that role) + 2C BN affine.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        # Channel-wise fully connected layer: each channel mixes only its own two style
        # statistics, which is exactly a depthwise conv1d of kernel 2 over the (mean, std) axis.
        self.cfc = nn.Conv1d(channels, channels, kernel_size=2, groups=channels, bias=False)
        self.bn = nn.BatchNorm1d(channels)

    def reset_parameters(self) -> None:
        """Re-initialise (the ResNet calls this after its own conv/BN init pass)."""
        self.cfc.reset_parameters()
        self.bn.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        flat = x.reshape(b, c, -1)
        mean = flat.mean(dim=2)
        # eps inside the sqrt keeps the gradient finite for constant (e.g. 1x1) feature maps.
        std = (flat.var(dim=2, unbiased=False) + self.eps).sqrt()
        style = torch.stack((mean, std), dim=2)  # (B, C, 2)
        z = self.bn(self.cfc(style))  # (B, C, 1)
        return x * torch.sigmoid(z).unsqueeze(-1)
