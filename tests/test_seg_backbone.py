"""The registered ticket backbone: strides, ticket SAMs, mmseg equivalence, weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures_seg import SHIPPED_TICKET, baseline_ticket, random_ticket
from torch import nn

from bench.engine.checkpoint import save_checkpoint
from bench.models.slots import build_supernet, build_ticket_model
from bench.ticket.schema import load_ticket
from bench.util.errors import BenchError
from tasks.segmentation import compat

compat.ensure()

from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

from tasks.segmentation.backbone import TicketResNet, load_backbone_weights  # noqa: E402
from tasks.segmentation.configs import mmseg_resnet_v1c  # noqa: E402

register_all_modules(init_default_scope=True)


def _build(**cfg) -> TicketResNet:
    net = MODELS.build(dict(type="TicketResNet", **cfg))
    assert isinstance(net, TicketResNet)
    return net


def test_shipped_ticket_from_the_registry_gives_d8_stage_features() -> None:
    ticket = load_ticket(SHIPPED_TICKET)
    net = _build(ticket=str(SHIPPED_TICKET)).eval()
    with torch.no_grad():
        feats = net(torch.randn(1, 3, 64, 96))
    assert isinstance(feats, tuple) and len(feats) == 4
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    assert [(64 // f.shape[2], 96 // f.shape[3]) for f in feats] == [(4, 4)] + [(8, 8)] * 3
    assert net.output_stride == 8
    # Stage-shared SGE: one module per stage holding a 1 bit, called only at the 1 bits.
    assert net.mask == ticket.mask
    assert sorted(net.shared_sams) == ["layer1", "layer2", "layer3", "layer4"]
    used = [blk.attention() is not None and blk.active for blk in net.blocks()]
    assert used == [bool(b) for b in ticket.mask]
    # D8 with mmseg's contract_dilation: layer3 dilation 1 then 2, layer4 2 then 4.
    dil = [[b.conv2.dilation[0] for b in getattr(net, s)] for s in ("layer3", "layer4")]
    assert dil == [[1] + [2] * 5, [2, 4, 4]]
    assert [getattr(net, s)[0].conv2.stride[0] for s in net.stage_names] == [1, 2, 1, 1]


def test_per_block_ticket_builds_exactly_its_sams() -> None:
    ticket = random_ticket("resnet18")
    net = _build(ticket=ticket.to_dict())
    assert [blk.sam is not None for blk in net.blocks()] == [bool(b) for b in ticket.mask]
    assert len(net.sam_modules()) == ticket.kept
    assert not net.shared_sams
    assert not hasattr(net, "fc")  # headless


def test_cifar_backbone_keeps_its_native_stride() -> None:
    net = _build(ticket=random_ticket("resnet20").to_dict())
    feats = net(torch.randn(2, 3, 32, 64))
    assert [f.shape[1:] for f in feats] == [(16, 32, 64), (32, 16, 32), (64, 8, 16)]
    assert not net.deep_stem


def test_equals_mmseg_resnet_v1c_d8_with_the_same_weights() -> None:
    ref = MODELS.build(mmseg_resnet_v1c(50, dict(type="BN", requires_grad=True)))
    ref.eval()
    ours = TicketResNet(baseline_ticket("resnet50", "none")).eval()
    assert set(ref.state_dict()) == set(ours.state_dict())  # same names, no SAM tensors
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        for a, b in zip(ref(x), ours(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_classification_checkpoint_loads_into_the_backbone(tmp_path: Path) -> None:
    ticket = random_ticket("resnet18")
    cls = build_ticket_model(ticket, num_classes=10)  # torchvision 7x7 stem, with fc
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": cls.state_dict(), "epoch": 3})
    net = _build(ticket=ticket.to_dict(), deep_stem=False, init_from=str(path))
    assert not torch.equal(net.conv1.weight, cls.conv1.weight)
    net.init_weights()
    theirs = cls.state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(v, theirs[k]), k

    # The deep (v1c) stem does not fit a 7x7-stem checkpoint: one line that says so.
    deep = _build(ticket=ticket.to_dict(), init_from=str(path))
    with pytest.raises(BenchError, match="7x7 stem.*deep_stem=False") as e:
        deep.init_weights()
    assert "\n" not in str(e.value)


def test_supernet_checkpoint_loads_by_name(tmp_path: Path) -> None:
    ticket = random_ticket("resnet20")
    sup = build_supernet(ticket, num_classes=10)
    path = tmp_path / "supernet.pt"
    torch.save({f"module.{k}": v for k, v in sup.state_dict().items()}, path)  # DDP names
    net = TicketResNet(ticket)
    load_backbone_weights(net, path)
    theirs = sup.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in net.state_dict().items())


def test_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    other = build_ticket_model(baseline_ticket("resnet32", "none"), num_classes=10)
    path = tmp_path / "r32.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(BenchError, match="do not fit the backbone .the file has layer1.3"):
        load_backbone_weights(TicketResNet(baseline_ticket("resnet20", "none")), path)


def test_norm_options() -> None:
    ticket = random_ticket("resnet20")
    sync = TicketResNet(ticket, norm_cfg=dict(type="SyncBN", requires_grad=True))
    assert any(isinstance(m, nn.SyncBatchNorm) for m in sync.modules())
    assert not any(type(m) is nn.BatchNorm2d for m in sync.modules())
    frozen = TicketResNet(ticket, norm_eval=True).train()
    assert all(not m.training for m in frozen.modules() if isinstance(m, nn.BatchNorm2d))
    assert frozen.layer1[0].conv1.training
    with pytest.raises(BenchError, match="norm_cfg.type"):
        TicketResNet(ticket, norm_cfg=dict(type="GN"))


# --- timm's and mmseg's language ---------------------------------------------------------


def test_dilated_backbone_equals_timms_output_stride_8_resnet() -> None:
    """timm's output_stride=8 ResNet-50 dilates as mmseg's contract_dilation does (the first
    block of a dilated stage at the previous dilation): same feature_info, same features."""
    import timm

    ours = TicketResNet(baseline_ticket("resnet50", "none"), deep_stem=False).eval()
    ref = timm.create_model("resnet50", pretrained=False, output_stride=8, num_classes=0).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    assert [(d["num_chs"], d["reduction"]) for d in ours.feature_info] == [
        (d["num_chs"], d["reduction"]) for d in ref.feature_info
    ]
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        a = ours.forward_intermediates(x, intermediates_only=True)
        b = ref.forward_intermediates(x, intermediates_only=True)
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u, v, rtol=0, atol=0)
        # The mmseg contract: forward gives the stages, which are intermediates 1..4.
        for u, v in zip(ours(x), a[1:], strict=True):
            torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_with_cp_gives_the_same_outputs_grads_and_statistics() -> None:
    """The shipped D8 ticket (stage-shared SGE, deep stem): with_cp changes memory only."""
    torch.manual_seed(0)
    plain = _build(ticket=str(SHIPPED_TICKET)).train()
    cp = _build(ticket=str(SHIPPED_TICKET), with_cp=True).train()
    cp.load_state_dict(plain.state_dict())
    recomputed = []
    cp.layer4[2].register_forward_pre_hook(lambda *_: recomputed.append(1))
    x = torch.randn(2, 3, 32, 48)
    outs = []
    for net in (plain, cp):
        feats = net(x)
        sum(f.square().mean() for f in feats).backward()
        outs.append(feats)
    assert len(recomputed) == 2  # forward, then again in the backward pass
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for (name, p), q in zip(plain.named_parameters(), cp.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    for (name, b), c in zip(plain.named_buffers(), cp.buffers(), strict=True):
        assert torch.equal(b, c), name


# What README "A ticket backbone in your own mmseg config" shows (the ticket path aside).
OWN_CONFIG = """
_base_ = ["mmseg::_base_/models/pspnet_r50-d8.py"]
custom_imports = dict(imports=["tasks.segmentation.backbone"], allow_failed_imports=False)
model = dict(
    pretrained=None,  # the base's open-mmlab ResNet weights: init_from loads a ticket's
    backbone=dict(
        _delete_=True,  # drop the base's ResNetV1c settings
        type="TicketResNet",
        ticket="{ticket}",
        deep_stem=True,
        output_stride=8,
        norm_cfg=dict(type="SyncBN", requires_grad=True),
        with_cp=True,
    ),
)
"""


def test_a_ticket_backbone_in_ones_own_mmseg_config(tmp_path: Path) -> None:
    from mmengine.config import Config

    path = tmp_path / "psp_ticket.py"
    path.write_text(OWN_CONFIG.format(ticket=SHIPPED_TICKET))
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model).eval()
    assert isinstance(model.backbone, TicketResNet) and model.backbone.grad_checkpointing
    assert model.backbone.mask == load_ticket(SHIPPED_TICKET).mask
    with torch.no_grad():
        logits = model.decode_head(model.extract_feat(torch.randn(1, 3, 64, 64)))
    assert logits.shape == (1, 19, 8, 8)  # Cityscapes' 19 classes at output stride 8
