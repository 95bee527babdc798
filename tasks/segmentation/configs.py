"""mmengine Runner configs for a ticket backbone, generated in Python from our templates.

The templates mirror MMSegmentation 1.2.2's Cityscapes configs (configs/_base_/models/
{fcn,pspnet,deeplabv3,deeplabv3plus}_r50-d8.py, upernet_r50.py, datasets/cityscapes.py,
schedules/schedule_{40k,80k}.py, default_runtime.py): same heads, widths for ResNet-50,
pipeline, SGD + poly schedule and hooks, but the backbone is the suite's `TicketResNet`
and nothing points at a download host (`pretrained=None`; weights come from `init_from`).
Decoder widths scale with the backbone as in mmseg's R-18 configs (channels = last stage
channels / 4, e.g. 512 for R-50 and 128 for R-18).

A config's name says algorithm, backbone, schedule, dataset and crop, like mmseg's:
`pspnet_<ticket>-d8_b2-40k_cityscapes-512x1024`.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.models.resnet import BACKBONES, stage_geometry
from bench.ticket.schema import Ticket
from bench.util.errors import BenchError
from bench.util.registry import Registry
from tasks.segmentation import compat
from tasks.segmentation.data import ANN_DIR, IGNORE_INDEX, IMG_DIR, TRAIN_CLASSES
from tasks.segmentation.options import SegHParams  # the recipe (light: the CLI reads it)

if TYPE_CHECKING:
    from mmengine.config import Config

NUM_CLASSES = len(TRAIN_CLASSES)  # 19 Cityscapes train ids
# ImageNet mean/std in RGB order on 0..255 pixels (mmseg's SegDataPreProcessor defaults).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


# ---- decoders ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Decoder:
    """A decode-head template: `heads(stage_channels, norm_cfg)` -> decode_head config, the
    output stride its mmseg config uses (8 for the D8 heads, 32 for UPerNet), and whether
    it pools globally (then BatchNorm needs at least 2 images per process)."""

    heads: Callable[[Sequence[int], dict], dict]
    output_stride: int
    pools: bool


DECODERS: Registry[Decoder] = Registry("segmentation decoder")


def _loss(weight: float) -> dict:
    return dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=weight)


def _width(channels: int) -> int:
    return max(16, channels // 4)


def _head(kind: str, channels: Sequence[int], norm_cfg: dict, **kw: Any) -> dict:
    return dict(
        type=kind,
        in_channels=channels[-1],
        in_index=len(channels) - 1,
        channels=_width(channels[-1]),
        dropout_ratio=0.1,
        num_classes=NUM_CLASSES,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=_loss(1.0),
        **kw,
    )


def _register(name: str, output_stride: int = 8, pools: bool = True):
    def deco(fn: Callable[[Sequence[int], dict], dict]) -> Callable[[Sequence[int], dict], dict]:
        DECODERS.register(name)(Decoder(fn, output_stride, pools))
        return fn

    return deco


@_register("fcn", pools=False)
def _fcn(ch: Sequence[int], norm: dict) -> dict:
    return _head("FCNHead", ch, norm, num_convs=2, concat_input=True)


@_register("pspnet")
def _pspnet(ch: Sequence[int], norm: dict) -> dict:
    return _head("PSPHead", ch, norm, pool_scales=(1, 2, 3, 6))


@_register("deeplabv3")
def _deeplabv3(ch: Sequence[int], norm: dict) -> dict:
    return _head("ASPPHead", ch, norm, dilations=(1, 12, 24, 36))


@_register("deeplabv3plus")
def _deeplabv3plus(ch: Sequence[int], norm: dict) -> dict:
    # mmseg: c1 = the first stage (256 channels in R-50 -> 48; R-18 64 -> 12).
    return _head(
        "DepthwiseSeparableASPPHead",
        ch,
        norm,
        dilations=(1, 12, 24, 36),
        c1_in_channels=ch[0],
        c1_channels=max(8, 3 * ch[0] // 16),
    )


@_register("upernet", output_stride=32)
def _upernet(ch: Sequence[int], norm: dict) -> dict:
    head = _head("UPerHead", ch, norm, pool_scales=(1, 2, 3, 6))
    head.update(in_channels=list(ch), in_index=list(range(len(ch))))
    return head


def aux_head(channels: Sequence[int], norm_cfg: dict) -> dict:
    """mmseg's auxiliary FCN head on the second-last stage (loss weight 0.4)."""
    c = channels[-2]
    return dict(
        type="FCNHead",
        in_channels=c,
        in_index=len(channels) - 2,
        channels=_width(c),
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=NUM_CLASSES,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=_loss(0.4),
    )


# ---- the whole Runner config -------------------------------------------------------------
def _wh(hw: Sequence[int]) -> tuple[int, int]:
    return int(hw[1]), int(hw[0])  # mmcv scales are (width, height)


def pipelines(hp: SegHParams) -> tuple[list[dict], list[dict]]:
    """mmseg's Cityscapes train and test pipelines at `hp.image_size` / `hp.crop`."""
    train = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations"),
        dict(
            type="RandomResize", scale=_wh(hp.image_size), ratio_range=(0.5, 2.0), keep_ratio=True
        ),
        dict(type="RandomCrop", crop_size=tuple(hp.crop), cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PhotoMetricDistortion"),
        dict(type="PackSegInputs"),
    ]
    test = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=_wh(hp.image_size), keep_ratio=True),
        dict(type="LoadAnnotations"),  # after Resize: scored at the label's full size
        dict(type="PackSegInputs"),
    ]
    return train, test


def config_name(ticket: Ticket, hp: SegHParams, output_stride: int | None) -> str:
    """e.g. pspnet_resnet50-sge-stage-ean-d8_b2-40k_cityscapes-512x1024."""
    sched = hp.schedule if not hp.iters else f"{hp.iters}it"
    d = f"-d{output_stride}" if output_stride else ""
    h, w = hp.crop
    return f"{hp.decoder}_{ticket.name}{d}_b{hp.batch_size}-{sched}_cityscapes-{h}x{w}"


def backbone_config(
    ticket: Ticket,
    hp: SegHParams,
    norm_cfg: dict,
    *,
    init_from: str | Path | None = None,
) -> dict:
    """The `TicketResNet` entry (ticket inlined as a dict, so the config is self-contained)."""
    from tasks.segmentation.backbone import default_output_stride

    os_ = DECODERS.get(hp.decoder).output_stride
    native = default_output_stride(ticket.backbone)
    return dict(
        type="TicketResNet",
        ticket=ticket.to_dict(),
        deep_stem=hp.deep_stem,
        output_stride=os_ if native is not None else None,
        contract_dilation=hp.contract_dilation,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_from=None if init_from is None else str(init_from),
    )


def mmseg_resnet_v1c(depth: int, norm_cfg: dict, output_stride: int = 8) -> dict:
    """mmseg's own ResNetV1c entry (the reference backbone of its R-xx-D8 configs)."""
    strides, dilations = {8: ((1, 2, 1, 1), (1, 1, 2, 4)), 32: ((1, 2, 2, 2), (1, 1, 1, 1))}[
        output_stride
    ]
    return dict(
        type="ResNetV1c",
        depth=depth,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=dilations,
        strides=strides,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
    )


def segmentation_config(
    ticket: Ticket,
    hp: SegHParams,
    *,
    data_root: str | Path,
    work_dir: str | Path,
    init_from: str | Path | None = None,
    device: str = "cpu",
    distributed: bool = False,
    metric: str = "TicketIoUMetric",
    backbone: Mapping[str, Any] | None = None,
) -> Config:
    """A complete mmengine Runner config for `ticket` + `hp.decoder` on Cityscapes.

    `device` picks BN/SyncBN and the DDP wrapper: SyncBN only for CUDA multi-process runs
    (under a gloo process group SyncBN fails on CPU). `backbone` replaces the ticket
    backbone entry (e.g. `mmseg_resnet_v1c` for side-by-side benchmarks).
    """
    compat.ensure()
    from mmengine.config import Config

    from tasks.segmentation.backbone import resolve_ticket

    ticket = resolve_ticket(ticket)
    cuda = device.startswith("cuda")
    # --deterministic (bench.engine.device) set torch's flags: keep mmengine from undoing them.
    deterministic = torch.are_deterministic_algorithms_enabled()
    norm_cfg = dict(type="SyncBN" if (cuda and distributed) else "BN", requires_grad=True)
    decoder = DECODERS.get(hp.decoder)
    if decoder.pools and norm_cfg["type"] == "BN" and hp.batch_size < 2:
        raise BenchError(
            f"decoder {hp.decoder} pools to 1x1 before a BatchNorm: batch_size must be >= 2 "
            "per process (mmseg uses 2)"
        )
    if backbone is not None:
        bb = dict(backbone)
    else:
        bb = backbone_config(ticket, hp, norm_cfg, init_from=init_from)
    if backbone is None:
        spec = BACKBONES.get(ticket.backbone)
        channels = list(spec.stage_channels)
        strides, _ = stage_geometry(spec, bb["output_stride"])
        os_ = (4 if spec.stem == "imagenet" else 1) * math.prod(strides)
    else:
        depth = int(bb.get("depth", 50))
        channels = [64, 128, 256, 512] if depth < 50 else [256, 512, 1024, 2048]
        os_ = decoder.output_stride
    if hp.aux_head and len(channels) < 2:
        raise BenchError("aux_head needs a backbone with at least two stages")
    name = config_name(ticket, hp, os_)
    train_pipeline, test_pipeline = pipelines(hp)
    root = str(Path(data_root))

    def dataset(split: str, pipeline: list[dict]) -> dict:
        return dict(
            type="CityscapesDataset",
            data_root=root,
            data_prefix=dict(img_path=f"{IMG_DIR}/{split}", seg_map_path=f"{ANN_DIR}/{split}"),
            pipeline=pipeline,
        )

    workers = hp.num_workers
    loader = dict(num_workers=workers, persistent_workers=workers > 0)
    interval = hp.interval
    model = dict(
        type="EncoderDecoder",
        data_preprocessor=dict(
            type="SegDataPreProcessor",
            mean=list(MEAN),
            std=list(STD),
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=IGNORE_INDEX,
            size=tuple(hp.crop),
        ),
        pretrained=None,  # never a download: weights come from init_from
        backbone=bb,
        decode_head=decoder.heads(channels, norm_cfg),
        train_cfg=dict(),
        test_cfg=dict(mode="whole"),
    )
    if hp.aux_head:
        model["auxiliary_head"] = aux_head(channels, norm_cfg)
    evaluator = dict(type=metric, iou_metrics=["mIoU"])
    cfg: dict[str, Any] = dict(
        default_scope="mmseg",
        work_dir=str(work_dir),
        # Unique per Runner: mmengine keys its logger, visualizer and scope by this name.
        experiment_name=f"{name}_{uuid.uuid4().hex[:8]}",
        model=model,
        train_pipeline=train_pipeline,
        test_pipeline=test_pipeline,  # mmseg.apis.init_model/inference_model read this
        train_dataloader=dict(
            batch_size=hp.batch_size,
            sampler=dict(type="InfiniteSampler", shuffle=True),
            dataset=dataset("train", train_pipeline),
            **loader,
        ),
        val_dataloader=dict(
            batch_size=1,
            sampler=dict(type="DefaultSampler", shuffle=False),
            dataset=dataset("val", test_pipeline),
            **loader,
        ),
        val_evaluator=evaluator,
        optim_wrapper=dict(
            type="OptimWrapper",
            optimizer=dict(
                type="SGD", lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            ),
            clip_grad=None,
        ),
        param_scheduler=[
            dict(
                type="PolyLR",
                eta_min=hp.min_lr,
                power=0.9,
                begin=0,
                end=hp.max_iters,
                by_epoch=False,
            )
        ],
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=hp.max_iters, val_interval=interval),
        val_cfg=dict(type="ValLoop"),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=min(50, interval), log_metric_by_epoch=False),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(
                type="CheckpointHook", by_epoch=False, interval=interval, max_keep_ckpts=2
            ),
            sampler_seed=dict(type="DistSamplerSeedHook"),
            visualization=dict(type="SegVisualizationHook"),
        ),
        env_cfg=dict(
            cudnn_benchmark=cuda and not deterministic,
            mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
            dist_cfg=dict(backend="nccl" if cuda else "gloo"),
        ),
        vis_backends=[dict(type="LocalVisBackend")],
        visualizer=dict(type="SegLocalVisualizer", vis_backends=[dict(type="LocalVisBackend")]),
        log_processor=dict(by_epoch=False),
        log_level="INFO",
        load_from=None,
        resume=False,
        randomness=dict(seed=hp.seed, **({"deterministic": True} if deterministic else {})),
        launcher="pytorch" if distributed else "none",
    )
    cfg["test_dataloader"] = cfg["val_dataloader"]
    cfg["test_evaluator"] = evaluator
    cfg["test_cfg"] = dict(type="TestLoop")
    if distributed and not cuda:
        # mmengine passes device_ids=[LOCAL_RANK] to DDP, which CPU modules refuse. Plain BN
        # (no SyncBN on CPU): rank 0's running stats go to every rank at each forward, so all
        # ranks validate and save one model.
        cfg["model_wrapper_cfg"] = dict(
            type="MMDistributedDataParallel",
            device_ids=None,
            broadcast_buffers=True,
            find_unused_parameters=False,
        )
    # cfg_text keeps mmengine from reading `filename`; the name is what Runner dumps it as.
    text = "# generated by tasks.segmentation.configs\n"
    # No yapf pass over the dumped text: it costs ~2 s per Runner (logged, dumped, and
    # stored in every checkpoint) and changes nothing but whitespace.
    return Config(cfg, cfg_text=text, filename=f"{name}.py", format_python_code=False)
