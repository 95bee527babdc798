"""Generated Runner configs mirror mmseg's Cityscapes configs and build for every decoder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from fixtures_seg import SHIPPED_TICKET, random_ticket

from bench.ticket.schema import load_ticket
from bench.util.errors import BenchError
from tasks.segmentation import compat
from tasks.segmentation.configs import (
    DECODERS,
    SegHParams,
    config_name,
    mmseg_resnet_v1c,
    segmentation_config,
)

compat.ensure()

from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import tasks.segmentation.backbone  # noqa: E402, F401

register_all_modules(init_default_scope=True)

# mmsegmentation's wheel ships its configs (for mim) in mmseg/.mim/configs.
MMSEG_CONFIGS = Path(next(iter(importlib.util.find_spec("mmseg").submodule_search_locations)))
MMSEG_CONFIGS = MMSEG_CONFIGS / ".mim" / "configs"
BASE_MODEL = {
    "fcn": "fcn_r50-d8.py",
    "pspnet": "pspnet_r50-d8.py",
    "deeplabv3": "deeplabv3_r50-d8.py",
    "deeplabv3plus": "deeplabv3plus_r50-d8.py",
    "upernet": "upernet_r50.py",
}


def _without_norm(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "norm_cfg"}


@pytest.mark.parametrize("decoder", sorted(BASE_MODEL))
def test_resnet50_heads_match_mmseg(decoder: str, tmp_path: Path) -> None:
    ref = Config.fromfile(MMSEG_CONFIGS / "_base_" / "models" / BASE_MODEL[decoder]).model
    ours = segmentation_config(
        load_ticket(SHIPPED_TICKET),
        SegHParams(decoder=decoder),
        data_root=tmp_path,
        work_dir=tmp_path / "w",
    ).model
    for key in ("decode_head", "auxiliary_head"):
        assert _without_norm(ours[key]) == _without_norm(ref[key].to_dict()), key
    assert ours.pretrained is None  # never a download
    assert ours.backbone.type == "TicketResNet"
    assert ours.backbone.output_stride == DECODERS.get(decoder).output_stride
    assert ours.test_cfg == ref.test_cfg


def test_pipelines_and_schedule_match_mmseg_cityscapes(tmp_path: Path) -> None:
    ds = Config.fromfile(MMSEG_CONFIGS / "_base_" / "datasets" / "cityscapes.py")
    sched = Config.fromfile(MMSEG_CONFIGS / "_base_" / "schedules" / "schedule_80k.py")
    cfg = segmentation_config(
        load_ticket(SHIPPED_TICKET),
        SegHParams(schedule="80k"),
        data_root=tmp_path,
        work_dir=tmp_path / "w",
    )
    assert cfg.train_pipeline == ds.train_pipeline
    assert cfg.test_pipeline == ds.test_pipeline
    assert cfg.train_dataloader.batch_size == ds.train_dataloader.batch_size == 2
    assert cfg.train_cfg == sched.train_cfg
    assert cfg.param_scheduler == sched.param_scheduler
    assert cfg.optim_wrapper.optimizer == sched.optim_wrapper.optimizer
    assert cfg.default_scope == "mmseg"
    assert cfg.model.data_preprocessor.size == (512, 1024)
    assert cfg.filename == "pspnet_resnet50-sge-stage-ean-d8_b2-80k_cityscapes-512x1024.py"


def test_names_options_and_unique_runner_names(tmp_path: Path) -> None:
    ticket = random_ticket("resnet18")
    hp = SegHParams(decoder="upernet", iters=300, crop=(256, 512), batch_size=4)
    name = config_name(ticket, hp, 32)
    assert name == "upernet_resnet18-se-rand1-d32_b4-300it_cityscapes-256x512"
    a = segmentation_config(ticket, hp, data_root=tmp_path, work_dir=tmp_path / "a")
    b = segmentation_config(ticket, hp, data_root=tmp_path, work_dir=tmp_path / "a")
    assert a.experiment_name != b.experiment_name  # logger/visualizer names per Runner
    assert a.train_cfg.max_iters == 300 and a.train_cfg.val_interval == 300
    assert a.param_scheduler[0].end == 300
    assert a.model.decode_head.channels == 128  # mmseg's R-18 width
    assert a.train_dataloader.dataset.data_root == str(tmp_path)
    # CPU under torchrun: BN (SyncBN needs CUDA) and a DDP wrapper without device ids.
    d = segmentation_config(
        ticket, hp, data_root=tmp_path, work_dir=tmp_path / "d", distributed=True
    )
    assert d.model.backbone.norm_cfg.type == "BN" and d.launcher == "pytorch"
    assert d.model_wrapper_cfg.device_ids is None
    g = segmentation_config(
        ticket, hp, data_root=tmp_path, work_dir=tmp_path / "g", device="cuda", distributed=True
    )
    assert g.model.decode_head.norm_cfg.type == "SyncBN" and "model_wrapper_cfg" not in g


def test_bad_hparams_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="decoder 'segformer'"):
        SegHParams(decoder="segformer")
    with pytest.raises(BenchError, match="crop"):
        SegHParams(crop=(512,))
    with pytest.raises(BenchError, match="batch_size must be >= 2"):
        segmentation_config(
            random_ticket(), SegHParams(batch_size=1), data_root=tmp_path, work_dir=tmp_path
        )


@pytest.mark.parametrize("decoder", DECODERS.list())
def test_every_decoder_builds_and_predicts_full_size(decoder: str, tmp_path: Path) -> None:
    cfg = segmentation_config(
        random_ticket("resnet20"),
        SegHParams(decoder=decoder, crop=(32, 64)),
        data_root=tmp_path,
        work_dir=tmp_path,
    )
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        logits = model.encode_decode(torch.randn(1, 3, 32, 64), [dict(img_shape=(32, 64))])
    assert logits.shape == (1, 19, 32, 64)


def test_mmseg_reference_backbone_entry_builds() -> None:
    bb = MODELS.build(mmseg_resnet_v1c(18, dict(type="BN")))
    feats = bb(torch.randn(1, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [8, 4, 4, 4]
