"""Our shared SAMs against the numerics of the official EAN code.

Official repository: gbup-group/EAN-efficient-attention-network.

Each test writes the official forward pass out again from the official equations, with plain
torch ops and independently of our modules, ties its weights to our module's parameters and
compares in float64. Each also checks that it is sensitive: a plausible drift (the biased SGE
variance, the old DIA gate order, a state that is not carried) moves the output by far more
than the tolerance.

Official equations (file paths relative to the official repository):
- SE, train_imagenet/imagenet_network/forward_config_share_se_fbresnet.py lines 24-43:
  s = sigmoid(W2 relu(W1 avgpool(x) + b1) + b2), out = x * s; W1, W2 1x1 convs with bias,
  C -> C // 16 -> C (reduction 16, lines 55-61).
- SGE, search_imagent/imagenet_network/forward_config_share_sge_fbresnet.py lines 25-48: 64
  groups (weight zeros, bias ones, lines 26-31); per sample and group, t = sum over the group's
  channels of x * avgpool(x) (lines 36-39); t -= mean(t) (line 40); t /= (t.std() + 1e-5), the
  UNBIASED std with eps added outside the root (lines 41-42); out = x * sigmoid(t * w_g + b_g).
- DIA, search_imagent/imagenet_network/forward_config_dia_fbresnet.py: small_cell (lines
  29-37) = Linear(C, C // 20) -> ReLU -> Linear(C // 20, 4C), both for the input and the hidden
  map (lines 50-51); LSTMCell (lines 58-77): gates = w_ih(m) + w_hh(h), chunked i, f, c, o
  (line 64); i, f, o sigmoid, c tanh; c' = f c + i c~ (line 69); h' = o sigmoid(c') (line 71).
  Stage loop (lines 106-124): m = avgpool(x); (h, c) = 0 at the stage's first active block,
  then carried to each later active block; out = x * h'; then x += residual, relu.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.models.layers import SGE, DIACell
from bench.models.resnet import build_model
from bench.models.sams import create_sam

TOL = 1e-6


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---- SE ----------------------------------------------------------------------------------


def official_se(x: torch.Tensor, w1, b1, w2, b2) -> torch.Tensor:
    """forward_config_share_se_fbresnet.py SEModule.forward: 1x1 convs on the pooled vector."""
    m = x.mean(dim=(2, 3))  # AdaptiveAvgPool2d(1), (B, C)
    z = torch.clamp(m @ w1.T + b1, min=0)  # fc1 (1x1 conv C -> C/16, bias), ReLU
    s = 1 / (1 + torch.exp(-(z @ w2.T + b2)))  # fc2 (1x1 conv C/16 -> C, bias), sigmoid
    return x * s[:, :, None, None]


@pytest.mark.parametrize("channels", [128, 256])
def test_se_matches_official(channels: int) -> None:
    m = create_sam("se", channels, rd_divisor=1).double()
    hid = channels // 16
    assert m.fc1.weight.shape == (hid, channels, 1, 1) and m.fc1.bias is not None
    assert m.fc2.weight.shape == (channels, hid, 1, 1) and m.fc2.bias is not None
    x = torch.randn(2, channels, 5, 7, dtype=torch.float64)
    ref = official_se(
        x,
        m.fc1.weight.view(hid, channels),
        m.fc1.bias,
        m.fc2.weight.view(channels, hid),
        m.fc2.bias,
    )
    with torch.no_grad():
        assert max_diff(m(x), ref) < TOL
        # Sensitive: dropping fc1's bias (a bias-free SE) moves the output well past TOL.
        no_bias = official_se(
            x, m.fc1.weight.view(hid, channels), 0 * m.fc1.bias, m.fc2.weight.view(channels, hid),
            m.fc2.bias,
        )  # fmt: skip
        assert max_diff(no_bias, ref) > 1e3 * TOL


def test_se_default_width_is_official_at_resnet50_widths() -> None:
    # Our registered default rounds the hidden width to a multiple of 8; at the ResNet-50
    # stage widths the official code uses (256..2048) that is exactly C // 16 anyway.
    for c in (256, 512, 1024, 2048):
        assert create_sam("se", c).fc1.out_channels == c // 16


# ---- SGE ---------------------------------------------------------------------------------


def official_sge(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, unbiased=True):
    """forward_config_share_sge_fbresnet.py SpatialGroupEnhance.forward, written out per
    sample b, group g, channel k of the group and position p. `unbiased=False` is the form we
    had before (sqrt of the biased variance plus eps), kept only to show the test is sensitive."""
    b, c, h, w = x.shape
    groups = weight.numel()
    xg = x.reshape(b, groups, c // groups, h * w)  # (b, g, k, p)
    gmean = xg.sum(dim=3) / (h * w)  # average pool per channel, (b, g, k)
    t = torch.einsum("bgkp,bgk->bgp", xg, gmean)  # sum_k x * avgpool(x)
    t = t - t.sum(dim=2, keepdim=True) / (h * w)
    ss = (t * t).sum(dim=2, keepdim=True)
    if unbiased:
        t = t / (torch.sqrt(ss / (h * w - 1)) + 1e-5)  # official: std (n - 1) + eps
    else:
        t = t / torch.sqrt(ss / (h * w) + 1e-5)  # old: sqrt(biased var + eps)
    z = t * weight.view(1, groups, 1) + bias.view(1, groups, 1)
    gate = 1 / (1 + torch.exp(-z))  # (b, g, p)
    return (xg * gate[:, :, None, :]).reshape(b, c, h, w)


def test_sge_matches_official_with_trained_like_parameters() -> None:
    # 128 channels: 64 groups of 2 channels; non-square map; weight/bias off their init.
    m = SGE(128, groups=64).double()
    assert m.groups == 64 and m.weight.shape == m.bias.shape == (1, 64, 1, 1)
    with torch.no_grad():
        m.weight.normal_(0.0, 1.0)
        m.bias.normal_(0.0, 1.0)
    x = torch.randn(2, 128, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        out = m(x)
        ref = official_sge(x, m.weight, m.bias)
        biased = official_sge(x, m.weight, m.bias, unbiased=False)
    assert max_diff(out, ref) < TOL
    # Sensitive: the biased-variance form differs from the official one by far more than TOL.
    assert max_diff(biased, ref) > 1e3 * TOL


def test_sge_matches_official_at_init() -> None:
    m = create_sam("sge", 128).double()  # registered default: 64 groups, weight 0, bias 1
    assert torch.equal(m.weight, torch.zeros(1, 64, 1, 1, dtype=torch.float64))
    assert torch.equal(m.bias, torch.ones(1, 64, 1, 1, dtype=torch.float64))
    x = torch.randn(2, 128, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        assert max_diff(m(x), official_sge(x, m.weight, m.bias)) < TOL


def test_sge_single_position_is_finite() -> None:
    # The official unbiased std of one value is NaN; ours keeps the centred map's 0.
    m = SGE(128).double()
    with torch.no_grad():
        m.bias.normal_()
    x = torch.randn(2, 128, 1, 1, dtype=torch.float64, requires_grad=True)
    out = m(x)
    gate = torch.sigmoid(m.bias).repeat_interleave(2, dim=1)  # 2 channels per group
    assert max_diff(out, x * gate) < TOL
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ---- DIA ---------------------------------------------------------------------------------


class OfficialLSTMCell:
    """forward_config_dia_fbresnet.py LSTMCell with one layer, weights tied to a DIACell.

    `order` names the four C-row chunks of the gates; the official one is i, f, c, o.
    """

    def __init__(self, cell: DIACell, order: str = "ifco") -> None:
        self.ih = [
            (cell.f_ih[0].weight, cell.f_ih[0].bias),
            (cell.f_ih[2].weight, cell.f_ih[2].bias),
        ]
        self.hh = [
            (cell.f_hh[0].weight, cell.f_hh[0].bias),
            (cell.f_hh[2].weight, cell.f_hh[2].bias),
        ]
        self.order = order

    @staticmethod
    def small_cell(v: torch.Tensor, layers) -> torch.Tensor:
        (w1, b1), (w2, b2) = layers
        return torch.clamp(v @ w1.T + b1, min=0) @ w2.T + b2

    def __call__(self, m: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        gates = self.small_cell(m, self.ih) + self.small_cell(h, self.hh)
        n = m.shape[1]
        part = {k: gates[:, j * n : (j + 1) * n] for j, k in enumerate(self.order)}
        sig = lambda v: 1 / (1 + torch.exp(-v))  # noqa: E731
        i, f, o = sig(part["i"]), sig(part["f"]), sig(part["o"])
        c_tilde = torch.tanh(part["c"])
        c_new = f * c + i * c_tilde
        h_new = o * sig(c_new)
        return h_new, c_new


def official_dia_stage(x, blocks, bits, lstm: OfficialLSTMCell, carry: bool = True):
    """Attention.forward of forward_config_dia_fbresnet.py over one stage; each block's
    residual branch and shortcut are the backbone's (not under test)."""
    first = True
    for blk, bit in zip(blocks, bits):
        identity = x if blk.downsample is None else blk.downsample(x)
        y = blk.branch(x)
        if bit:
            m = y.mean(dim=(2, 3))
            if first or not carry:
                h = torch.zeros_like(m)
                c = torch.zeros_like(m)
                first = False
            h, c = lstm(m, h, c)
            y = y * h[:, :, None, None]
        x = torch.relu(y + identity)
    return x


def randomize_(cell: DIACell) -> None:
    # Spread the gates well past their init so every gate chunk matters to the output.
    with torch.no_grad():
        for p in cell.parameters():
            p.normal_(0.0, 1.0)


def test_dia_cell_matches_official_over_three_steps() -> None:
    c = 80  # hidden C // 20 = 4
    cell = DIACell(c, reduction=20).double()
    assert cell.f_ih[0].out_features == cell.f_hh[0].out_features == c // 20
    assert cell.f_ih[2].out_features == cell.f_hh[2].out_features == 4 * c
    randomize_(cell)
    lstm = OfficialLSTMCell(cell)
    xs = [torch.randn(2, c, 5, 7, dtype=torch.float64) for _ in range(3)]
    state: dict = {}
    h = hc = torch.zeros(2, c, dtype=torch.float64)
    with torch.no_grad():
        for step, x in enumerate(xs):
            h, hc = lstm(x.mean(dim=(2, 3)), h, hc)
            out = cell(x, state)
            assert max_diff(out, x * h[:, :, None, None]) < TOL, f"step {step}"
            assert max_diff(state[cell.key][0], h) < TOL and max_diff(state[cell.key][1], hc) < TOL


@pytest.mark.parametrize("stage_bits", [(1, 1, 1), (0, 1, 1), (1, 0, 1)])
def test_dia_stage_matches_official_stage_loop(stage_bits: tuple[int, ...]) -> None:
    # resnet20's layer3: 3 blocks of 64 channels (hidden 64 // 20 = 3), one shared cell.
    torch.manual_seed(1)
    model = build_model("resnet20-dia", sharing="stage", sam_args={"reduction": 20})
    model = model.double().eval()
    cell = model.shared_sams["layer3"]
    randomize_(cell)
    model.set_mask([1] * 6 + list(stage_bits))
    blocks = list(model.layer3)
    x = torch.randn(2, 32, 8, 8, dtype=torch.float64)  # layer2's output shape
    with torch.no_grad():
        state: dict = {}
        ours = x
        for blk in blocks:
            ours = blk(ours, state)
        ref = official_dia_stage(x, blocks, stage_bits, OfficialLSTMCell(cell))
        assert max_diff(ours, ref) < TOL
        # Sensitive: the old gate order (i, f, o, g) and an uncarried state both differ.
        old_order = official_dia_stage(x, blocks, stage_bits, OfficialLSTMCell(cell, "ifoc"))
        assert max_diff(old_order, ref) > 1e3 * TOL
        if sum(stage_bits) > 1:
            fresh = official_dia_stage(x, blocks, stage_bits, OfficialLSTMCell(cell), carry=False)
            assert max_diff(fresh, ref) > 1e3 * TOL


def test_dia_official_dropout_is_inert() -> None:
    # The official LSTMCell applies Dropout(0.1) only to the input of a second layer (line 74);
    # with one layer its output is discarded, so train mode must not change ours either.
    cell = DIACell(80, reduction=20).double()
    x = torch.randn(2, 80, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(cell.train()(x, {}), cell.eval()(x, {}))
    assert not any(isinstance(mod, nn.Dropout) for mod in cell.modules())
