"""The backbone speaks timm's language: feature_info, forward_intermediates, checkpointing.

References are timm's own ResNets (timm.create_model, pretrained=False) holding our
weights: torchvision's parameter names are timm's, and our SE slot sits where
timm's seresnet50 puts its SE (after bn3, before the addition).
"""

from __future__ import annotations

import pytest
import timm
import torch

from bench.models.resnet import build_model


def _pair(ours_name: str, timm_name: str, **kwargs):
    torch.manual_seed(0)
    ours = build_model(ours_name, **kwargs).eval()
    ref = timm.create_model(timm_name, pretrained=False, **kwargs).eval()
    # Our SAM slot is `sam`; timm calls the same module `se`.
    ref.load_state_dict({k.replace(".sam.", ".se."): v for k, v in ours.state_dict().items()})
    return ours, ref


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("output_stride", [None, 8])
def test_feature_info_matches_timm(output_stride: int | None) -> None:
    kw = {} if output_stride is None else {"output_stride": output_stride}
    ours = build_model("resnet50", **kw)
    ref = timm.create_model("resnet50", pretrained=False, **kw)
    strip = [{k: d[k] for k in ("num_chs", "reduction")} for d in ref.feature_info]
    assert [{k: d[k] for k in ("num_chs", "reduction")} for d in ours.feature_info] == strip
    assert [d["module"] for d in ours.feature_info][1:] == ["layer1", "layer2", "layer3", "layer4"]
    # Every module named exists (timm's feature extractors hook these names).
    names = dict(ours.named_modules())
    assert all(d["module"] in names for d in ours.feature_info)


def test_cifar_feature_info_by_hand() -> None:
    net = build_model("resnet20")  # 3x3 stem at stride 1, stages 16/32/64 at 1/2/4
    assert net.feature_info == [
        {"num_chs": 16, "reduction": 1, "module": "relu"},
        {"num_chs": 16, "reduction": 1, "module": "layer1"},
        {"num_chs": 32, "reduction": 2, "module": "layer2"},
        {"num_chs": 64, "reduction": 4, "module": "layer3"},
    ]
    deep = build_model("resnet50", deep_stem=True)
    assert deep.feature_info[0] == {"num_chs": 64, "reduction": 2, "module": "stem"}
    feats = net.forward_intermediates(torch.randn(2, 3, 32, 32), intermediates_only=True)
    assert [f.shape[1:] for f in feats] == [
        (d["num_chs"], 32 // d["reduction"], 32 // d["reduction"]) for d in net.feature_info
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"indices": 2},
        {"indices": [0, 3]},
        {"indices": [-1]},
        {"indices": [1, 2], "stop_early": True},
        {"indices": 3, "intermediates_only": True},
        {"norm": True},
    ],
)
@pytest.mark.parametrize("names", [("resnet50", "resnet50"), ("resnet50-se", "seresnet50")])
def test_forward_intermediates_equal_timms(kwargs: dict, names: tuple[str, str]) -> None:
    ours, ref = _pair(*names)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ours.forward_intermediates(x, **kwargs), ref.forward_intermediates(x, **kwargs)
    if kwargs.get("intermediates_only"):
        _same(a, b)
        return
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    _same(a[1], b[1])


def test_forward_intermediates_refuses_what_timm_refuses() -> None:
    net = build_model("resnet18")
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="NCHW"):
        net.forward_intermediates(x, output_fmt="NHWC")
    with pytest.raises(AssertionError, match="out of range"):
        net.forward_intermediates(x, indices=[5])


@pytest.mark.parametrize("model", ["resnet50-se", "resnet20-dia"])
def test_grad_checkpointing_changes_nothing_but_memory(model: str) -> None:
    """Same outputs, gradients and BN running statistics with and without; each block
    runs twice per training step with it (the recomputation), so it is really on."""
    torch.manual_seed(0)
    sharing = "stage" if model.endswith("dia") else "block"  # DIA: the recurrent state
    plain = build_model(model, num_classes=5, sharing=sharing).train()
    cp = build_model(model, num_classes=5, sharing=sharing).train()
    cp.load_state_dict(plain.state_dict())
    cp.set_grad_checkpointing()
    calls = []
    cp.blocks()[1].register_forward_pre_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 3, 32, 32)
    for net in (plain, cp):
        net(x).square().sum().backward()
    assert len(calls) == 2
    for (name, p), q in zip(plain.named_parameters(), cp.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    for (name, b), c in zip(plain.named_buffers(), cp.buffers()):
        assert torch.equal(b, c), name
    with torch.no_grad():  # inference skips the checkpointing
        torch.testing.assert_close(plain.eval()(x), cp.eval()(x), rtol=0, atol=0)
    assert len(calls) == 3
