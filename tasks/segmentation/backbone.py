"""The suite's ticket network as an mmseg backbone (`type="TicketResNet"` in a config).

It IS the core's materialized ticket network (bench.models.slots.build_ticket_model):
the same modules and parameter names (torchvision's, which are also mmseg's ResNetV1c
names), so a classification checkpoint of the ticket network, or an mmseg ResNetV1c
state dict, loads by name. For dense prediction it is headless, dilated (output stride 8
by default: strides 1,2,1,1 and dilations 1,1,2,4 as mmseg's R-50-D8), optionally with the
ResNetV1c deep stem, and returns the stage features as a tuple. Every ticket bit is
applied: SAM modules exist exactly at the ticket's 1 slots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.engine.checkpoint import load_checkpoint
from bench.models.resnet import BACKBONES, SlotResNet
from bench.models.slots import model_config
from bench.runs.pretrained import LoadReport, load_state, state_dict_of
from bench.ticket.schema import Ticket, load_ticket, validate
from bench.util.errors import BenchError
from tasks.segmentation import compat

compat.ensure()

from mmseg.registry import MODELS  # noqa: E402  (after the mmcv-lite stand-in)

TicketLike = Ticket | Mapping[str, Any] | str | Path


def resolve_ticket(ticket: TicketLike) -> Ticket:
    """A Ticket from a Ticket, a ticket file path or a ticket dict (`Ticket.to_dict()`)."""
    if isinstance(ticket, Ticket):
        return ticket
    if isinstance(ticket, str | Path):
        return load_ticket(ticket)
    if isinstance(ticket, Mapping):
        # mmengine's Config turns nested dicts into ConfigDict; validate wants plain ones.
        return validate(_plain(ticket), source="config field 'backbone.ticket'")
    raise BenchError(f"backbone.ticket: expected a ticket file or dict, got {type(ticket)}")


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def default_output_stride(backbone: str) -> int | None:
    """8 for ImageNet ResNets (D8, as mmseg's Cityscapes configs); CIFAR ResNets stay native
    (stride 4 at the last stage: they have no stem downsampling to dilate past)."""
    return 8 if BACKBONES.get(backbone).stem == "imagenet" else None


def _strided_conv(block: nn.Module) -> nn.Conv2d:
    # The 3x3 conv that carries the block's stride: conv2 in a bottleneck, conv1 in a basic.
    return block.conv2 if hasattr(block, "conv3") else block.conv1


@MODELS.register_module()
class TicketResNet(SlotResNet):
    """Ticket backbone for mmseg decoders; `forward` returns the stage features.

    Args:
        ticket: a ticket file path, a ticket dict (Ticket.to_dict()) or a Ticket.
        deep_stem: ResNetV1c stem (three 3x3 convs) as mmseg's R-50-D8; ImageNet only.
        output_stride: 8, 16, 32 for ImageNet backbones; None = `default_output_stride`.
        contract_dilation: the first block of a dilated stage uses half the dilation
            (mmseg's `contract_dilation=True` in its D8 configs).
        out_indices: stage indices to return (default: all stages).
        norm_cfg: dict(type="BN" | "SyncBN"); SyncBN for multi-GPU runs.
        norm_eval: keep BatchNorm layers in eval mode while training.
        init_from: a checkpoint of the ticket network (classification checkpoint with
            "model" key, bare state dict, or a supernet's) loaded by `init_weights`.
        with_cp: gradient checkpointing (mmseg's name; timm's `set_grad_checkpointing`):
            every block's activations are recomputed in the backward pass instead of
            stored, which lets a deep dilated backbone train at full resolution on less
            memory; outputs, gradients and BN statistics are the same.

    The timm interface comes with the network: `feature_info` and `forward_intermediates`.
    """

    def __init__(
        self,
        ticket: TicketLike,
        *,
        deep_stem: bool = True,
        output_stride: int | None = None,
        contract_dilation: bool = True,
        out_indices: Sequence[int] | None = None,
        norm_cfg: Mapping[str, Any] | None = None,
        norm_eval: bool = False,
        init_from: str | Path | None = None,
        in_channels: int = 3,
        with_cp: bool = False,
        init_cfg: Any = None,
    ) -> None:
        t = resolve_ticket(ticket)
        spec = BACKBONES.get(t.backbone)
        if deep_stem and spec.stem != "imagenet":
            deep_stem = False  # CIFAR ResNets have a single 3x3 stem conv, nothing to deepen
        if output_stride is None:
            output_stride = default_output_stride(t.backbone)
        super().__init__(
            model_config(t),
            built=t.mask,
            num_classes=0,
            output_stride=output_stride,
            out_indices=out_indices,
            deep_stem=deep_stem,
            in_chans=in_channels,
        )
        if init_cfg is not None:
            raise BenchError("backbone.init_cfg: not supported; use init_from (a checkpoint)")
        self.ticket = t
        self.norm_eval = norm_eval
        self.init_from = None if init_from is None else str(init_from)
        self.init_report: LoadReport | None = None  # set when init_weights loads init_from
        if contract_dilation:
            self._contract_dilation()
        self.set_grad_checkpointing(bool(with_cp))
        norm = dict(norm_cfg or {"type": "BN"})
        kind = norm.pop("type", "BN")
        requires_grad = norm.pop("requires_grad", True)
        if kind == "SyncBN":
            # Swap in place: this object must stay the registered TicketResNet.
            for name, child in list(self.named_children()):
                setattr(self, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        elif kind != "BN":
            raise BenchError(f"backbone.norm_cfg.type: expected BN or SyncBN, got {kind!r}")
        if norm:
            raise BenchError(f"backbone.norm_cfg: unsupported keys {sorted(norm)}")
        if not requires_grad:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.requires_grad_(False)

    def _contract_dilation(self) -> None:
        for stage in self.stage_names:
            first = getattr(self, stage)[0]
            conv = _strided_conv(first)
            d = conv.dilation[0]
            if d > 1:
                conv.dilation = (d // 2, d // 2)
                conv.padding = (d // 2, d // 2)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Channels of every stage's output (decoder widths come from these)."""
        return self.spec.stage_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        return self.forward_features(x)

    def train(self, mode: bool = True) -> TicketResNet:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Called by the Runner before training: load `init_from` if given (else keep the
        core's initialisation)."""
        if self.init_from is not None:
            load_backbone_weights(self, self.init_from)


def _is_sam_key(key: str) -> bool:
    return key.startswith("shared_sams.") or ".sam." in key


def load_backbone_weights(net: SlotResNet, path: str | Path) -> LoadReport:
    """Load a checkpoint of the ticket network into `net` by parameter name
    (bench.runs.pretrained.load_state: strict, the classifier dropped).

    Accepted: the suite's checkpoints ("model" key), bare state dicts, mmseg segmentors,
    DDP/compile-wrapped names and supernet checkpoints (SAMs at slots the ticket drops are
    skipped). Read with weights_only=True. BenchError when the file does not fit.
    """
    path = str(path)
    sd = state_dict_of(load_checkpoint(path), path)
    if "conv1.weight" in sd and "stem.0.weight" in net.state_dict():
        raise BenchError(
            f"checkpoint {path} has a 7x7 stem: build the backbone with deep_stem=False"
        )
    if "stem.0.weight" in sd and "conv1.weight" in net.state_dict():
        raise BenchError(
            f"checkpoint {path} has a deep stem: build the backbone with deep_stem=True"
        )
    report = load_state(net, sd, f"checkpoint {path}", drop=_is_sam_key)
    net.init_report = report  # for the result record (read after the Runner built the net)
    return report
