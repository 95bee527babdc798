"""SAM-slot ResNets: sizes, torchvision compatibility, masking and materialization."""

import pytest
import timm
import torch
import torchvision

from bench.cost.measure import count_params
from bench.models.resnet import (
    BACKBONES,
    ModelConfig,
    SlotResNet,
    build_model,
    list_model_names,
    parse_model_name,
)
from bench.models.sams import SAMS
from bench.models.slots import materialize
from bench.util.errors import BenchError


def test_known_parameter_counts():
    assert count_params(build_model("resnet50")) == (25_557_032, 0)
    se = build_model("resnet50-se")
    assert count_params(se)[0] == 28_088_024
    assert count_params(se)[0] == sum(
        p.numel() for p in timm.create_model("seresnet50").parameters()
    )
    total, sams = count_params(build_model("resnet164"))
    assert 1.70e6 < total < 1.75e6 and sams == 0
    total_se, sams_se = count_params(build_model("resnet164-se"))
    assert 1.88e6 < total_se < 1.95e6 and total_se - sams_se == total


def test_torchvision_state_dict_loads_strictly_and_matches_outputs():
    torch.manual_seed(0)
    for name in ("resnet18", "resnet50"):
        tv = getattr(torchvision.models, name)().eval()
        ours = build_model(name).eval()
        ours.load_state_dict(tv.state_dict(), strict=True)
        x = torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(ours(x), tv(x))


def test_mask_is_not_part_of_the_state_dict():
    assert not any("slot_mask" in k for k in build_model("resnet20-se").state_dict())


@pytest.mark.parametrize("channels_last", [False, True])
def test_global_pools_are_means_bit_equal_to_adaptive_pooling(channels_last: bool):
    """The head (and DIA) pool by x.mean over H and W, whose backward is deterministic on
    CUDA; on CPU it is AdaptiveAvgPool2d(1)'s result bit for bit, forward and backward."""
    torch.manual_seed(0)
    net = build_model("resnet20-dia").eval()
    x = torch.randn(6, 64, 8, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = net.forward_head(a)
    theirs = net.fc(torch.flatten(torch.nn.AdaptiveAvgPool2d(1)(b), 1))
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    assert torch.equal(ours, theirs) and torch.equal(a.grad, b.grad)


def test_slot_ids_are_stable_and_grouped_by_stage():
    r50 = BACKBONES.get("resnet50")
    assert len(r50.slot_ids) == 16 and r50.slot_ids[0] == "layer1.0"
    assert r50.slot_ids.index("layer3.4") == 3 + 4 + 4
    assert len(BACKBONES.get("resnet164").slot_ids) == 54
    assert BACKBONES.get("resnet20").layers == (3, 3, 3)
    assert BACKBONES.get("resnet110").layers == (18, 18, 18)


def test_model_names_and_glob_listing():
    assert parse_model_name("resnet50-se") == ("resnet50", "se")
    assert parse_model_name("resnet164") == ("resnet164", None)
    with pytest.raises(BenchError, match="unknown SAM 'zz'"):
        parse_model_name("resnet50-zz")
    with pytest.raises(BenchError, match="unknown backbone"):
        parse_model_name("resnet51-se")
    names = list_model_names("resnet5*-s*")
    assert "resnet50-se" in names and "resnet50-sge" in names and "resnet56-srm" in names
    assert all(n.startswith("resnet5") for n in names)


def _hooked(model: SlotResNet) -> list[int]:
    calls = [0] * len(model.slot_ids)
    for i, blk in enumerate(model.blocks()):
        if blk.sam is not None:
            blk.sam.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


def test_zero_slot_module_is_never_called():
    torch.manual_seed(0)
    model = build_model("resnet20-se").eval()
    calls = _hooked(model)
    mask = [1, 0, 0, 1, 0, 1, 1, 0, 0]
    model.set_mask(mask)
    model(torch.randn(2, 3, 32, 32))
    assert calls == mask
    model.set_mask([0] * 9)
    model(torch.randn(2, 3, 32, 32))
    assert calls == mask  # nothing new was called


def test_shared_module_is_called_only_at_connected_blocks():
    model = build_model("resnet20-sge", sharing="stage").eval()
    calls = {name: 0 for name in model.shared_sams}
    for name, sam in model.shared_sams.items():
        sam.register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
    model.set_mask([1, 1, 0, 0, 0, 0, 0, 1, 1])
    model(torch.randn(1, 3, 32, 32))
    assert calls == {"layer1": 2, "layer2": 0, "layer3": 2}


@pytest.mark.parametrize(
    "name,sharing,sam_args",
    [
        ("resnet20-se", "block", {}),
        ("resnet20-cbam", "block", {}),
        ("resnet20-dia", "stage", {}),
        ("resnet20-dia", "block", {}),
        ("resnet20-sge", "stage", {"groups": 8}),
        ("resnet18-srm", "block", {}),
    ],
)
def test_supernet_with_mask_equals_materialized_network(name, sharing, sam_args):
    torch.manual_seed(0)
    supernet = build_model(name, sharing=sharing, sam_args=sam_args)
    # Move BN statistics away from their init so that inheriting them matters.
    supernet.train()
    with torch.no_grad():
        for _ in range(2):
            supernet(torch.randn(8, 3, 32, 32))
    supernet.eval()
    n = len(supernet.slot_ids)
    mask = [int(i % 3 != 1) for i in range(n)]
    supernet.set_mask(mask)
    ticket_net = materialize(supernet, mask)
    assert ticket_net.mask == tuple(mask)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ticket_net(x), supernet(x), rtol=0, atol=0)
    # Real savings: a 0 slot holds no module at all (a shared module goes only with its
    # whole stage).
    fewer = count_params(ticket_net)[1] < count_params(supernet)[1]
    assert fewer if sharing == "block" else not fewer
    assert count_params(ticket_net)[0] - count_params(ticket_net)[1] == (
        count_params(supernet)[0] - count_params(supernet)[1]
    )


def test_materialized_network_cannot_switch_on_a_missing_slot():
    net = SlotResNet(ModelConfig("resnet20", "se"), built=[1] * 4 + [0] * 5)
    assert sum(blk.sam is not None for blk in net.blocks()) == 4
    net.set_mask([1] * 3 + [0] * 6)  # switching off built slots is fine
    with pytest.raises(BenchError, match="no SAM"):
        net.set_mask([1] * 9)
    with pytest.raises(BenchError, match="8 bits"):
        net.set_mask([1] * 8)


def test_empty_stage_has_no_shared_module():
    net = SlotResNet(ModelConfig("resnet20", "se", {}, "stage"), built=[0, 0, 0] + [1] * 6)
    assert set(net.shared_sams) == {"layer2", "layer3"}


@pytest.mark.parametrize("sam", SAMS.list())
@pytest.mark.parametrize("sharing", ["block", "stage"])
def test_every_sam_trains_inside_a_resnet(sam, sharing):
    torch.manual_seed(0)
    model = build_model(f"resnet20-{sam}", sharing=sharing, num_classes=4)
    model.set_mask([1, 0, 1, 1, 1, 0, 0, 1, 1])
    out = model(torch.randn(4, 3, 16, 16))
    out.logsumexp(1).sum().backward()
    sam_params = [p for m in model.sam_modules() for p in m.parameters()]
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in sam_params)
    if sam_params:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sam_params)


@pytest.mark.parametrize(
    "os_,strides,dil3",
    [(32, (4, 8, 16, 32), 1), (16, (4, 8, 16, 16), 1), (8, (4, 8, 8, 8), 2)],
)
def test_output_stride_and_stage_features(os_, strides, dil3):
    net = build_model("resnet50-se", num_classes=0, output_stride=os_).eval()
    x = torch.randn(1, 3, 64, 64)
    feats = net.forward_features(x)
    assert [64 // f.shape[-1] for f in feats] == list(strides)
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    assert net.layer3[0].conv2.dilation == (dil3, dil3)
    assert net.layer3[-1].conv2.dilation == (dil3, dil3)
    assert net.output_stride == os_


def test_out_indices_and_deep_stem():
    net = build_model("resnet50", num_classes=0, output_stride=8, deep_stem=True,
                      out_indices=(1, 3))  # fmt: skip
    feats = net.forward_features(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [512, 2048]
    assert not hasattr(net, "conv1") and net.stem[0].stride == (2, 2)
    assert net.layer4[0].conv2.dilation == (4, 4)
    with pytest.raises(BenchError, match="output_stride 12"):
        build_model("resnet50", output_stride=12)
