"""CIFAR and ImageNet ResNets in which every residual block has one SAM slot.

The slot sits after the last BN of the residual branch and before the addition (as in
timm and the official EAN code). Parameter names follow torchvision, so a torchvision or
timm ResNet state dict loads strictly into the SAM-free backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from bench.models.backbones import (
    BACKBONES,
    SHARING_MODES,
    BackboneSpec,
    Sharing,
)
from bench.models.names import split_model
from bench.models.sams import SAMS, create_sam
from bench.util.errors import BenchError


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes a network's structure, apart from which slots hold a SAM."""

    backbone: str
    sam: str | None = None
    sam_args: dict = field(default_factory=dict)
    sharing: Sharing = "block"

    @property
    def name(self) -> str:
        return self.backbone if self.sam is None else f"{self.backbone}-{self.sam}"

    @property
    def spec(self) -> BackboneSpec:
        return BACKBONES.get(self.backbone)


def parse_model_name(name: str) -> tuple[str, str | None]:
    """Split `resnet50-se` into ("resnet50", "se"); a bare backbone name means no SAM."""
    parts = split_model(name)
    if parts is None:
        raise BenchError(f"model name {name!r}: expected <backbone>[-<sam>], e.g. resnet50-se")
    backbone, sam = parts
    BACKBONES.get(backbone)
    if sam is not None:
        SAMS.get(sam)
    return backbone, sam


def list_model_names(pattern: str = "*") -> list[str]:
    """Every `<backbone>[-<sam>]` name, filtered by a shell-style glob."""
    import fnmatch

    names = [b for b in BACKBONES] + [f"{b}-{s}" for b in BACKBONES for s in SAMS]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class SlotBlock(nn.Module):
    """A residual block with one SAM slot; subclasses define the residual branch.

    The SAM is either owned (`self.sam`, per-block sharing) or the stage's shared module
    (held in a plain list so it is registered once, on the network, not once per block).
    `active` is the block's mask bit: when False the SAM is not called at all.
    """

    expansion = 1

    def __init__(self) -> None:
        super().__init__()
        self.sam: nn.Module | None = None
        self._shared: list[nn.Module] = []
        self.active = False

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attention(self) -> nn.Module | None:
        """The SAM this block calls when its bit is 1 (own or shared), or None."""
        if self.sam is not None:
            return self.sam
        return self._shared[0] if self._shared else None

    def forward(self, x: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.branch(x)
        if self.active:
            sam = self.attention()
            if sam is not None:
                if getattr(sam, "stateful", False):
                    out = sam(out, {} if state is None else state)
                else:
                    out = sam(out)
        out += identity  # in place, as torchvision and timm do
        return self.relu(out)


class BasicBlock(SlotBlock):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(cin, planes, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(SlotBlock):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes * 4, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))


def stage_geometry(spec: BackboneSpec, output_stride: int | None) -> tuple[list[int], list[int]]:
    """Per-stage strides and dilations that reach `output_stride` (None = native).

    Once the cumulative stride would pass the target, a stage keeps stride 1 and dilates
    instead; every block of that stage uses the stage's dilation (mmseg's D8/D16).
    """
    stem = 4 if spec.stem == "imagenet" else 1
    native = [1] + [2] * (len(spec.layers) - 1)
    native_os = stem * 2 ** (len(spec.layers) - 1)
    target = native_os if output_stride is None else output_stride
    valid = [stem * 2**k for k in range(len(spec.layers))]
    if target not in valid:
        raise BenchError(f"output_stride {output_stride}: expected one of {valid}")
    strides, dilations, cur, dil = [], [], stem, 1
    for s in native:
        if cur * s > target:
            dil *= s
            strides.append(1)
        else:
            cur *= s
            strides.append(s)
        dilations.append(dil)
    return strides, dilations


class SlotResNet(nn.Module):
    """A ResNet whose blocks each have one SAM slot, switchable by a runtime mask.

    `built` says which slots hold a SAM module (default: all, the supernet); the mask set
    by `set_mask` may switch built slots on and off between forward passes. A network
    built with only the ticket's slots is the materialized ticket.

    It speaks timm's language where the two overlap: `feature_info` (a list of dicts
    num_chs / reduction / module: the stem's activation, then every stage),
    `forward_intermediates` with timm's signature, `forward_head` and `set_grad_checkpointing`.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        num_classes: int | None = None,
        built: Sequence[int] | None = None,
        output_stride: int | None = None,
        out_indices: Sequence[int] | None = None,
        deep_stem: bool = False,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        spec = config.spec
        self.config = config
        self.spec = spec
        self.slot_ids: tuple[str, ...] = spec.slot_ids
        n = len(self.slot_ids)
        if config.sharing not in SHARING_MODES:
            raise BenchError(f"sharing {config.sharing!r}: expected one of {SHARING_MODES}")
        built_t = tuple(int(b) for b in (built if built is not None else [1] * n))
        if len(built_t) != n:
            raise BenchError(f"{config.name}: mask has {len(built_t)} bits, model has {n} slots")
        self.built = built_t if config.sam is not None else (0,) * n
        self.num_classes = spec.default_classes if num_classes is None else num_classes
        self.out_indices = (
            tuple(range(len(spec.layers))) if out_indices is None else tuple(out_indices)
        )
        self.deep_stem = deep_stem
        self.grad_checkpointing = False
        # What `materialize` needs to rebuild the same network with other slots built.
        self.build_kwargs = dict(
            num_classes=self.num_classes,
            output_stride=output_stride,
            out_indices=self.out_indices,
            deep_stem=deep_stem,
            in_chans=in_chans,
        )
        cin = self._build_stem(in_chans)
        self.relu = nn.ReLU(inplace=True)
        self.feature_info = [
            dict(num_chs=cin, reduction=self._stem_stride, module="stem" if deep_stem else "relu")
        ]
        cin = self._build_stages(cin, output_stride)
        self.num_features = cin
        if self.num_classes > 0:
            self.fc = nn.Linear(cin, self.num_classes)
        self._init_weights()
        self.set_mask(self.built)

    def _build_stem(self, in_chans: int) -> int:
        """conv1/bn1 (7x7 or CIFAR 3x3) or the deep stem, and the maxpool; its channels."""
        self._stem_stride = 2 if self.spec.stem == "imagenet" else 1  # before the maxpool
        if self.spec.stem != "imagenet":
            self.conv1 = _conv3x3(in_chans, 16)
            self.bn1 = nn.BatchNorm2d(16)
            self.maxpool: nn.Module = nn.Identity()
            return 16
        if self.deep_stem:  # ResNetV1c stem (mmseg's R-50-D8): three 3x3 convs
            self.stem = nn.Sequential(
                _conv3x3(in_chans, 32, 2), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                _conv3x3(32, 32), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                _conv3x3(32, 64), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            )  # fmt: skip
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        return 64

    def _build_stages(self, cin: int, output_stride: int | None) -> int:
        """The residual stages with their SAMs (own or shared per stage); output channels."""
        config, spec = self.config, self.spec
        block_cls = Bottleneck if spec.block == "bottleneck" else BasicBlock
        strides, dilations = stage_geometry(spec, output_stride)
        reduction = 4 if spec.stem == "imagenet" else 1
        self.output_stride = reduction * _prod(strides)
        self.shared_sams = nn.ModuleDict()
        self.stage_names = spec.stage_names
        bit = 0
        for si, (stage, nblocks, planes) in enumerate(
            zip(spec.stage_names, spec.layers, spec.planes)
        ):
            blocks = []
            cout = planes * block_cls.expansion
            stage_bits = self.built[bit : bit + nblocks]
            shared = None
            if config.sam is not None and config.sharing == "stage" and any(stage_bits):
                shared = create_sam(config.sam, cout, **config.sam_args)
                self.shared_sams[stage] = shared
            for b in range(nblocks):
                blk = block_cls(cin, planes, strides[si] if b == 0 else 1, dilations[si])
                if stage_bits[b]:
                    if shared is not None:
                        blk._shared = [shared]
                    else:
                        blk.sam = create_sam(config.sam, cout, **config.sam_args)
                cin = cout
                blocks.append(blk)
            setattr(self, stage, nn.Sequential(*blocks))
            reduction *= strides[si]
            self.feature_info.append(dict(num_chs=cout, reduction=reduction, module=stage))
            bit += nblocks
        return cin

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # SAMs keep their own initialisation (e.g. GCT and SGE gates start neutral).
        for sam in self.sam_modules():
            reset = getattr(sam, "reset_parameters", None)
            if callable(reset):
                reset()

    # ---- slots -----------------------------------------------------------------------
    def blocks(self) -> list[SlotBlock]:
        """Residual blocks in forward order (slot order)."""
        return [blk for s in self.stage_names for blk in getattr(self, s)]

    def sam_modules(self) -> list[nn.Module]:
        """Every distinct SAM module of the network (own and shared)."""
        mods = [blk.sam for blk in self.blocks() if blk.sam is not None]
        return mods + list(self.shared_sams.values())

    @property
    def mask(self) -> tuple[int, ...]:
        return tuple(int(b.active) for b in self.blocks())

    def set_mask(self, mask: Sequence[int] | torch.Tensor) -> None:
        """Switch slots on/off for the following forward passes (supernet sampling)."""
        bits = [int(v) for v in (mask.tolist() if isinstance(mask, torch.Tensor) else mask)]
        if len(bits) != len(self.slot_ids):
            raise BenchError(
                f"{self.config.name}: mask has {len(bits)} bits, model has "
                f"{len(self.slot_ids)} slots"
            )
        if any(b and not built for b, built in zip(bits, self.built)):
            raise BenchError(f"{self.config.name}: mask switches on a slot that has no SAM")
        # Python state only, never a tensor: switching masks costs no device copy, no buffer
        # DDP would broadcast every step, and nothing a checkpoint would hold.
        for blk, b in zip(self.blocks(), bits):
            blk.active = bool(b)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them
        (timm's name; mmseg's `with_cp`): less memory, the same outputs and gradients."""
        self.grad_checkpointing = enable

    # ---- forward -----------------------------------------------------------------------
    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem up to its activation (feature 0), before the maxpool."""
        if self.deep_stem:
            return self.stem(x)
        return self.relu(self.bn1(self.conv1(x)))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem and its maxpool: the first block's input."""
        return self.maxpool(self._stem(x))

    def _stage(self, stage: str, x: torch.Tensor) -> torch.Tensor:
        state: dict = {}  # recurrent SAM state (DIA) flows only within a stage
        checkpointing = self.grad_checkpointing and torch.is_grad_enabled()
        for blk in getattr(self, stage):
            x = checkpointed(blk, x, state) if checkpointing else blk(x, state)
        return x

    def _stages(self, x: torch.Tensor):
        """Yield each stage's output in order."""
        x = self.forward_stem(x)
        for stage in self.stage_names:
            x = self._stage(stage, x)
            yield x

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stage features at `out_indices` (the dense-task backbone contract)."""
        return tuple(f for i, f in enumerate(self._stages(x)) if i in self.out_indices)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's `forward_intermediates`: the features `feature_info` lists (0: the stem's
        activation, before the maxpool; 1..: the stages) at `indices` (None: all; an int n:
        the last n; a sequence: those, negative from the end), and the final feature map.

        stop_early: run no stage past the deepest index asked for. norm: no-op (a ResNet
        has no final norm). output_fmt: only "NCHW".
        """
        from timm.models._features import feature_take_indices

        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt {output_fmt!r}: a ResNet gives NCHW only")
        take, last = feature_take_indices(len(self.feature_info), indices)
        intermediates = []
        x = self._stem(x)
        if 0 in take:
            intermediates.append(x)
        x = self.maxpool(x)
        stages = self.stage_names[:last] if stop_early else self.stage_names
        for i, stage in enumerate(stages, start=1):
            x = self._stage(stage, x)
            if i in take:
                intermediates.append(x)
        return intermediates if intermediates_only else (x, intermediates)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """timm's `forward_head`: global average pool and flatten the final feature map,
        then the classifier (skipped with `pre_logits`)."""
        if self.num_classes <= 0:
            raise RuntimeError("headless backbone: call forward_features")
        # A mean over H and W: what AdaptiveAvgPool2d(1) computes (torch runs it as this mean,
        # bit for bit), said explicitly: its backward is deterministic on CUDA too.
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_classes <= 0:
            raise RuntimeError("headless backbone: call forward_features")
        *_, x = self._stages(x)
        return self.forward_head(x)


def checkpointed(block: SlotBlock, x: torch.Tensor, state: dict) -> torch.Tensor:
    """`block(x, state)` under activation checkpointing (torch.utils.checkpoint).

    The recurrent state (DIA's per-stage (h, c)) travels as explicit tensors, so the
    recomputation in the backward pass starts from this call's state, not from the one
    later blocks left in the dict. Buffers (BN running statistics) are put back after the
    recomputation, so they move once per step, exactly as without checkpointing.
    """
    from torch.utils.checkpoint import checkpoint

    keys = list(state)
    sizes = [len(state[k]) for k in keys]
    flat = [t for k in keys for t in state[k]]
    modules = [block] + ([block.attention()] if block.sam is None and block._shared else [])
    buffers = [b for m in modules for b in m.buffers()]
    calls = 0
    out_keys: list[str] = []
    out_sizes: list[int] = []

    def run(x: torch.Tensor, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        nonlocal calls
        local, i = {}, 0
        for k, n in zip(keys, sizes):
            local[k], i = tuple(flat[i : i + n]), i + n
        saved = [b.clone() for b in buffers] if calls else None
        calls += 1
        try:
            out = block(x, local)
        finally:  # the recomputation (which may stop early): undo its update of the BN stats
            if saved is not None:
                with torch.no_grad():
                    for b, v in zip(buffers, saved):
                        b.copy_(v)
        out_keys[:], out_sizes[:] = list(local), [len(local[k]) for k in local]
        return (out, *[t for k in local for t in local[k]])

    out, *new = checkpoint(run, x, *flat, use_reentrant=False)
    state.clear()
    i = 0
    for k, n in zip(out_keys, out_sizes):
        state[k], i = tuple(new[i : i + n]), i + n
    return out


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for v in xs:
        out *= v
    return out


def build_model(
    name_or_config: str | ModelConfig,
    *,
    sharing: Sharing = "block",
    sam_args: dict | None = None,
    **kwargs,
) -> SlotResNet:
    """Build `resnet50-se` etc.; `built=` picks which slots get a SAM (default all)."""
    if isinstance(name_or_config, ModelConfig):
        config = name_or_config
    else:
        backbone, sam = parse_model_name(name_or_config)
        config = ModelConfig(backbone, sam, dict(sam_args or {}), sharing)
    return SlotResNet(config, **kwargs)
