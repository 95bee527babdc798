"""The SAM zoo: shapes, gradients, parameter counts and one behavioural check per own module."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.models.layers import GCT, SGE, SRM, DIACell, SimAM
from bench.models.sams import SAMS, create_sam, describe_sam, sam_defaults
from bench.util.errors import BenchError


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def call(m: nn.Module, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
    """Call a SAM the way the ResNet does: stateful ones get the stage's state dict."""
    if getattr(m, "stateful", False):
        return m(x, {} if state is None else state)
    return m(x)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("channels", [16, 64, 256])
@pytest.mark.parametrize("name", SAMS.list())
def test_shape_and_finite_grads(name: str, channels: int) -> None:
    m = create_sam(name, channels)
    # Non-square, odd spatial size catches reshape/transposition mistakes.
    x = torch.randn(2, channels, 5, 7, requires_grad=True)
    state: dict = {}
    out = sum(call(m, x, state) for _ in range(3)) if getattr(m, "stateful", False) else m(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has non-finite gradient"


def test_stateless_have_no_stateful_flag() -> None:
    flagged = {n for n in SAMS.list() if getattr(create_sam(n, 16), "stateful", False)}
    assert flagged == {"dia"}


def test_dia_state_is_carried() -> None:
    m = create_sam("dia", 32)
    x = torch.randn(2, 32, 4, 4)
    state: dict = {}
    first = m(x, state)
    h, c = state["dia"]
    assert h.shape == c.shape == (2, 32) and ((h > 0) & (h < 1)).all()
    second = m(x, state)
    assert torch.allclose(first, m(x, {}))  # a fresh dict starts from zeros again
    assert not torch.allclose(second, m(x, {}))


def test_dia_state_flows_between_per_block_cells() -> None:
    a, b = DIACell(32), DIACell(32)
    x = torch.randn(2, 32, 4, 4)
    state: dict = {}
    a(x, state)
    assert not torch.allclose(b(x, state), b(x, {}))


def test_dia_forget_gate_unused_on_first_step() -> None:
    # From zero state c' = i*g, so the forget-gate rows cannot matter on step one but must on
    # step two: checks the gate split and that c (not just h) is carried.
    m = DIACell(16)
    x = torch.randn(2, 16, 3, 3)
    s1: dict = {}
    y1, y2 = m(x, s1), m(x, s1)
    with torch.no_grad():
        for f in (m.f_ih, m.f_hh):
            f[2].weight[16:32].normal_()  # rows of the forget gate (order i, f, g, o)
            f[2].bias[16:32].normal_()
    s2: dict = {}
    z1, z2 = m(x, s2), m(x, s2)
    assert torch.allclose(y1, z1)
    assert not torch.allclose(y2, z2)


def test_dia_rejects_mismatched_state() -> None:
    state: dict = {}
    DIACell(16)(torch.randn(2, 16, 3, 3), state)
    with pytest.raises(ValueError, match="per stage"):
        DIACell(16)(torch.randn(3, 16, 3, 3), state)


@pytest.mark.parametrize("c", [16, 64, 256])
def test_dia_param_count(c: int) -> None:
    r = c // 4
    assert n_params(create_sam("dia", c)) == 2 * (c * r + r + r * 4 * c + 4 * c)


def test_se_param_counts_match_timm_seresnet50() -> None:
    assert n_params(create_sam("se", 256)) == 2 * 256 * 16 + 16 + 256
    stages = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    assert sum(n_params(create_sam("se", c)) for c in stages) == 2_530_992


def test_small_param_counts() -> None:
    assert n_params(create_sam("simam", 256)) == 0
    assert n_params(create_sam("sge", 256)) == 128
    assert n_params(create_sam("sge", 16)) == 32  # gcd(16, 64) = 16 groups
    assert n_params(create_sam("gct", 64)) == 3 * 64
    assert n_params(create_sam("srm", 64)) == 4 * 64


def test_unknown_name_lists_known() -> None:
    with pytest.raises(BenchError, match=r"unknown SAM 'nope'.*se.*simam"):
        create_sam("nope", 16)


def test_bad_option_is_bench_error() -> None:
    with pytest.raises(BenchError, match="accepted: groups"):
        create_sam("sge", 64, grups=8)
    with pytest.raises(BenchError, match="mode"):
        create_sam("gct", 64, mode="l3")
    assert create_sam("sge", 64, groups=8).groups == 8


def test_glob_and_descriptions() -> None:
    assert SAMS.list("s*") == ["se", "sge", "simam", "srm"]
    assert {"se", "cbam", "eca", "srm", "sge", "simam", "gct", "dia"} <= set(SAMS.list())
    for name in SAMS.list():
        line = describe_sam(name)
        assert line and "\n" not in line and re_year(line), name
    assert sam_defaults("sge") == {"groups": 64}
    assert sam_defaults("simam") == {"e_lambda": 1e-4}


def re_year(text: str) -> bool:
    return any(f"20{y:02d})" in text for y in range(10, 30))


def test_sge_init_gate_is_sigmoid_one() -> None:
    x = torch.randn(2, 64, 5, 7)
    assert torch.allclose(SGE(64)(x), x * torch.sigmoid(torch.tensor(1.0)))


def test_sge_groups_are_independent_and_favour_mean_aligned_positions() -> None:
    m = SGE(64, groups=8)
    with torch.no_grad():
        m.weight.fill_(1.0)
        m.bias.zero_()
    x = torch.randn(1, 64, 4, 4)
    y = m(x)
    x2 = x.clone()
    x2[:, :8] += torch.randn(1, 8, 4, 4)  # perturb group 0 only
    assert torch.allclose(m(x2)[:, 8:], y[:, 8:])
    # With positive weight the position most similar to the group mean gets the largest gate.
    g = x[0, :8]
    sim = (g * g.mean(dim=(1, 2), keepdim=True)).sum(0)
    gate = y[0, 0] / x[0, 0]
    assert gate.flatten().argmax() == sim.flatten().argmax()


def test_simam_matches_hand_computation() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    lam = 1e-4
    var = (2.25 + 0.25 + 0.25 + 2.25) / 3  # mean 2.5, n = HW - 1
    expect = [v / (1 + math.exp(-((v - 2.5) ** 2 / (4 * (var + lam)) + 0.5))) for v in (1, 2, 3, 4)]
    assert torch.allclose(SimAM(e_lambda=lam)(x).flatten(), torch.tensor(expect))


def test_gct_init_is_identity_and_gate_formula() -> None:
    x = torch.randn(2, 8, 5, 7)
    m = GCT(8)
    assert torch.equal(m(x), x)  # gamma = beta = 0: x * (1 + tanh(0))
    with torch.no_grad():
        m.gamma.fill_(1.0)
    s = x.pow(2).sum(dim=(2, 3)).add(1e-5).sqrt()  # l2 embedding, alpha = 1
    s_hat = math.sqrt(8) * s / s.norm(dim=1, keepdim=True)
    expect = x * (1 + torch.tanh(s_hat)).view(2, 8, 1, 1)
    assert torch.allclose(m(x), expect, atol=1e-5)


def test_srm_gate_from_style_statistics() -> None:
    m = SRM(4).eval()  # eval: BN uses running stats mean 0, var 1, i.e. ~identity
    with torch.no_grad():
        m.cfc.weight.copy_(torch.tensor([[0.5, -1.0]]).repeat(4, 1).view(4, 1, 2))
    x = torch.randn(2, 4, 5, 7)
    mean = x.mean(dim=(2, 3))
    std = x.var(dim=(2, 3), unbiased=False).add(1e-5).sqrt()
    z = (0.5 * mean - std) / math.sqrt(1 + 1e-5)
    assert torch.allclose(m(x), x * torch.sigmoid(z).view(2, 4, 1, 1), atol=1e-6)


@pytest.mark.parametrize("name", ["sge", "gct", "srm", "dia"])
def test_reset_parameters_restores_init(name: str) -> None:
    m = create_sam(name, 16)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(3.0)
    m.reset_parameters()
    assert all((p != 3.0).any() for p in m.parameters())
    if name == "gct":
        x = torch.randn(2, 16, 3, 3)
        assert torch.equal(m(x), x)
