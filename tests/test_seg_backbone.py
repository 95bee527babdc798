"""The registered ticket backbone: strides, ticket SAMs, mmseg equivalence, weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures_seg import SHIPPED_TICKET, baseline_ticket, random_ticket
from torch import nn

from bench.engine.checkpoint import save_checkpoint
from bench.errors import BenchError
from bench.models.slots import build_supernet, build_ticket_model
from bench.tickets import load_ticket
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
