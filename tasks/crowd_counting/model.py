"""CSRNet-style counter around a ticket backbone (Li, Zhang, Chen, CVPR 2018).

front-end: the materialized ticket network without its classifier, every stage used (so
every ticket bit applies) and dilated to output stride 8 like mmseg's D8 backbones
(CIFAR ResNets, whose native stride is 4, keep 4: they never downsample more);
back-end: CSRNet configuration B, six 3x3 convolutions of 512, 512, 512, 256, 128, 64
channels with dilation 2, each followed by ReLU (no batch norm, as in CSRNet);
head: a 1x1 convolution to one density channel. Back-end and head start from N(0, 0.01)
weights and zero biases, CSRNet's initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.resnet import BACKBONES, SlotResNet
from bench.models.slots import build_ticket_model
from bench.ticket.schema import Ticket

BACKEND_B = (512, 512, 512, 256, 128, 64)
BACKEND_DILATION = 2
TARGET_STRIDE = 8


def frontend_stride(ticket: Ticket) -> int:
    """8, or the backbone's native output stride when that is smaller (CIFAR ResNets: 4)."""
    spec = BACKBONES.get(ticket.backbone)
    native = (4 if spec.stem == "imagenet" else 1) * 2 ** (len(spec.layers) - 1)
    return min(TARGET_STRIDE, native)


class CrowdCounter(nn.Module):
    """Ticket front-end + CSRNet back-end B + 1x1 head; output: N x 1 x H/s x W/s density."""

    def __init__(self, ticket: Ticket) -> None:
        super().__init__()
        stride = frontend_stride(ticket)
        n_stages = len(ticket.stage_sizes)
        self.frontend: SlotResNet = build_ticket_model(
            ticket, num_classes=0, output_stride=stride, out_indices=(n_stages - 1,)
        )
        self.output_stride = self.frontend.output_stride
        layers: list[nn.Module] = []
        cin = self.frontend.num_features
        for cout in BACKEND_B:
            layers += [
                nn.Conv2d(cin, cout, 3, padding=BACKEND_DILATION, dilation=BACKEND_DILATION),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.backend = nn.Sequential(*layers)
        self.head = nn.Conv2d(cin, 1, 1)
        for m in [*self.backend.modules(), self.head]:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def sam_modules(self) -> list[nn.Module]:
        """The front-end's SAMs (bench.cost.measure counts their parameters apart)."""
        return self.frontend.sam_modules()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (feat,) = self.frontend.forward_features(x)
        return self.head(self.backend(feat))
