"""FLOP rules (bench.cost.flops): SAM counts checked against hand counts of the published
algorithms, ResNet-50 against torchvision, and tickets against their full network.

Hand counts use the rules of bench.cost.flops: conv/matmul 2 per multiply-add (bias adds not
counted, as in torch's formulas); elementwise op 1 per output element; reduction or
adaptive pooling 1 per input element; eval batch norm 2 per element.
"""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

from bench.cli.main import main
from bench.cost.measure import count_flops
from bench.models.resnet import build_model
from bench.models.sams import create_sam
from bench.models.slots import build_ticket_model
from bench.ticket.schema import baseline_mask, load_ticket, make_ticket

# One input for every SAM: 2 channels per SGE group (gcd(128, 64) = 64 groups) and N = 2
# so a rule that forgets the batch dimension fails.
N, C, H, W = 2, 128, 8, 8
HW = H * W
E = N * C * HW  # elements of the feature map
NC = N * C  # elements of a per-channel map (N, C, 1, 1)


class _Call(nn.Module):
    """Calls a SAM as SlotBlock does: a stateful one with `state` (default: a fresh dict)."""

    def __init__(self, sam: nn.Module, state: dict | None = None) -> None:
        super().__init__()
        self.sam, self.state = sam, state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.sam, "stateful", False):
            return self.sam(x, {} if self.state is None else self.state)
        return self.sam(x)


def sam_flops(name: str) -> int:
    return count_flops(_Call(create_sam(name, C)), torch.randn(N, C, H, W))


def test_se_flops_by_hand():
    # Hu et al. 2018 (timm SEModule): hidden = 128 / 16 = 8 (already a multiple of 8).
    hid = 8
    expected = (
        E  # squeeze: global average pool, 1 per input element
        + N * 2 * C * hid  # fc1 C -> C/r (1x1 conv); its bias adds are not counted
        + N * hid  # ReLU
        + N * 2 * hid * C  # fc2 C/r -> C
        + NC  # sigmoid
        + E  # excite: x * gate
    )
    assert sam_flops("se") == expected == 41_232


def test_cbam_flops_by_hand():
    # Woo et al. 2018 (timm CbamModule): channel MLP hidden = 128 / 16 = 8 (divisor 1, no
    # bias), shared by the avg- and max-pooled branches; spatial 7x7 conv 2 -> 1 + BN.
    hid, k = 8, 7
    mlp = N * 2 * C * hid + N * hid + N * 2 * hid * C  # fc1, ReLU, fc2
    channel = (
        E  # average pool over H, W
        + E  # max pool over H, W (amax)
        + 2 * mlp  # the shared MLP on both pooled vectors
        + NC  # avg branch + max branch
        + NC  # sigmoid
        + E  # x * channel gate
    )
    spatial = (
        E  # mean over channels
        + E  # max over channels
        + 2 * (N * HW) * 2 * k * k  # 7x7 conv, 2 -> 1 channel, padded to H x W outputs
        + 2 * N * HW  # eval BN (scale and shift)
        + N * HW  # sigmoid
        + E  # x * spatial gate
    )
    assert sam_flops("cbam") == channel + spatial == 140_704


def test_eca_flops_by_hand():
    # Wang et al. 2020: k = |log2(C) + 1| / 2 = 4, made odd -> 5; 1-D conv without bias.
    k = 5
    expected = (
        E  # global average pool
        + N * 2 * C * k  # conv1d over the channel axis, 1 -> 1 channel, kernel k
        + NC  # sigmoid
        + E  # x * gate (expand_as is a view)
    )
    assert sam_flops("eca") == expected == 35_584


def test_sge_flops_by_hand():
    # Li et al. 2019, as the official EAN code (forward_config_share_sge_fbresnet.py lines
    # 34-48): G = 64 groups of C/G = 2 channels; M = one value per group and position.
    # t = t / (t.std() + 1e-5): the std (rule: 4 per input element, its root included) and one
    # add of eps per group; no separate sqrt, as the earlier sqrt(var + eps) form had.
    g = 64
    M = N * g * HW
    expected = (
        E  # group's global feature: average pool of each channel
        + E  # x * mean (per channel and position)
        + E  # sum over the group's channels -> similarity map (N*G, 1, H, W)
        + M  # spatial mean of the similarity
        + M  # subtract it
        + 4 * M  # unbiased std over space (rule: 4 per input element)
        + N * g  # std + eps
        + M  # divide by it
        + M  # * weight
        + M  # + bias
        + M  # sigmoid
        + E  # x * gate
    )
    assert sam_flops("sge") == expected == 147_584


def test_simam_flops_by_hand():
    # Yang et al. 2021, official code: d = (x - mean)^2; y = d / (4 (sum(d) / n + lambda)) + 0.5.
    expected = (
        E  # mean over H, W
        + E  # x - mean
        + E  # ^2
        + E  # sum over H, W
        + NC  # / n
        + NC  # + lambda
        + NC  # 4 * (...)
        + E  # d / (...)
        + E  # + 0.5
        + E  # sigmoid
        + E  # x * gate
    )
    assert sam_flops("simam") == expected == 131_840


def test_dia_flops_by_hand():
    # Huang et al. 2020: gates = f_ih(gap(x)) + f_hh(h), f = Linear(C, C/4) ReLU Linear(C/4, 4C).
    hid = C // 4
    bottleneck = N * 2 * C * hid + N * hid + N * 2 * hid * 4 * C  # linear, ReLU, linear
    expected = (
        E  # global average pool
        + 2 * bottleneck  # f_ih and f_hh; f_hh runs on the zero state of a stage's first block
        + N * 4 * C  # f_ih + f_hh
        + 3 * NC  # sigmoid of i, f, o
        + NC  # tanh of g
        + NC  # f * c
        + NC  # i * g
        + NC  # c' = f c + i g
        + NC  # sigmoid(c')
        + NC  # h' = o * sigmoid(c')
        + E  # x * h'
    )
    assert sam_flops("dia") == expected == 200_064


def test_dia_later_blocks_cost_the_same():
    cell, x = create_sam("dia", C), torch.randn(N, C, H, W)
    state: dict = {}
    cell(x, state)  # the carried (h, c) replaces zeros: same ops, same count
    assert count_flops(_Call(cell, state), x) == sam_flops("dia")


def test_in_place_ops_are_counted():
    class InPlace(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.clone()  # a copy: 0
            return x.mul_(2).add_(1).relu_().sigmoid_()

    assert count_flops(InPlace(), torch.randn(N, C, H, W)) == 4 * E


@pytest.fixture(scope="module")
def r50_flops() -> int:
    return count_flops(torchvision.models.resnet50(weights=None), torch.randn(1, 3, 224, 224))


def test_resnet50_matches_torchvision(r50_flops):
    assert 4.05 < r50_flops / 2e9 < 4.2  # the familiar ~4.1 GMACs (conv alone: 4.09)
    ours = count_flops(build_model("resnet50"), torch.randn(1, 3, 224, 224))
    assert ours == r50_flops


@pytest.mark.parametrize("sam", ["se", "sge", "simam"])
def test_fewer_active_sams_fewer_flops(sam):
    mask = baseline_mask("random", 9, density=0.5, seed=1)
    base = {"kind": "baseline", "baseline": "random", "seed": 1, "density": 0.5}
    ticket = make_ticket("t", "resnet20", sam, mask, base)
    x = torch.randn(1, 3, 32, 32)
    full, part = (count_flops(build_model(f"resnet20-{sam}", built=b), x) for b in (None, mask))
    none = count_flops(build_model("resnet20"), x)
    assert none < count_flops(build_ticket_model(ticket), x) == part < full


@pytest.mark.parametrize("sam", ["se", "sge", "simam"])
def test_ticket_show_reports_gflops_saved(sam, tmp_path, capsys):
    path = tmp_path / "t.json"
    make = ["ticket", "make", f"resnet20-{sam}", "--mask", "random:0.5", "--seed", "1"]
    assert main([*make, "-o", str(path)]) == 0
    assert sum(load_ticket(path).mask) == 4  # round(0.5 * 9): the ticket drops SAMs
    capsys.readouterr()
    assert main(["ticket", "show", str(path), "--no-latency"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"GFLOPs saved vs full: ticket ([\d.]+)%, none ([\d.]+)%", out)
    assert m, out
    ticket, none = map(float, m.groups())
    assert 0 < ticket < none
