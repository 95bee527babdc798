"""(g) Dense tasks: training iterations per second of the SAM-free ticket backbone vs
mmseg's own ResNet with the same decoder, crop and batch.

Segmentation: one mmseg `train_step` (data preprocessor, forward, losses, backward, SGD)
of the ticket network as `TicketResNet` (deep stem, D8) vs mmseg's ResNetV1c-D8 under the
same decoder, on a real batch (the fixture photo through mmseg's Cityscapes training
pipeline). Counting: one training step (forward, MSE to a density map, backward, SGD) of
the CSRNet-style counter (tasks.crowd_counting.model) with its ticket front-end vs the same
counter with mmseg's ResNet at the same geometry (stride 8 by dilations 1, 1, 2, 4, no
deep stem, as the counter's front-end). The ticket is the shipped EAN SGE ticket's network
with every slot off (its "none" control); quick runs use a ResNet-18.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.cli.args import TICKET_DIR
from bench.ticket.schema import Ticket, control_tickets, load_ticket, make_ticket, model_slots
from benchmarks.harness import Session, ratio, within
from tasks.segmentation import compat

compat.ensure()

from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmseg.registry import DATASETS, MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import tasks.segmentation.backbone  # noqa: E402, F401  (registers TicketResNet)
from tasks.crowd_counting.model import CrowdCounter  # noqa: E402
from tasks.segmentation.configs import SegHParams, mmseg_resnet_v1c, segmentation_config  # noqa: E402

EAN_TICKET = TICKET_DIR / "resnet50-sge-stage-ean.json"
SIZES = {  # backbone, decoder, crop (H, W), batch
    "default": ("resnet50", "pspnet", (64, 128), 2),
    "full": ("resnet50", "pspnet", (512, 1024), 2),  # mmseg's Cityscapes crop
    "quick": ("resnet18", "fcn", (32, 64), 1),
}


def none_ticket(backbone: str) -> Ticket:
    """The SAM-free network of the shipped ticket's family (resnet50: its "none" control)."""
    if backbone == "resnet50":
        return control_tickets(load_ticket(EAN_TICKET), 0, ("none",))[0]
    prov = {"kind": "baseline", "baseline": "none", "seed": 0}
    return make_ticket("none", backbone, "se", (0,) * len(model_slots(backbone)), prov)


def segmentation(s: Session, ticket: Ticket, decoder: str, crop: tuple[int, int],
                 batch: int, device: str = "cpu") -> None:  # fmt: skip
    """On `device`; a CUDA side waits for its kernels, so that its time is theirs."""
    hp = SegHParams(decoder=decoder, crop=crop, image_size=crop, batch_size=batch)
    depth = int(ticket.backbone.removeprefix("resnet"))
    with tempfile.TemporaryDirectory() as tmp:
        from tasks.segmentation.sample import write_cityscapes_sample

        data = write_cityscapes_sample(Path(tmp) / "cs", size=crop, train=batch, val=1)
        kw = dict(data_root=data, work_dir=tmp, device=device)
        ref = mmseg_resnet_v1c(depth, dict(type="BN", requires_grad=True), 8)
        configs = {
            "mmseg": segmentation_config(ticket, hp, backbone=ref, **kw),
            "ticket": segmentation_config(ticket, hp, **kw),
        }
        dataset = DATASETS.build(configs["ticket"].train_dataloader.dataset)
        torch.manual_seed(0)
        data_batch = pseudo_collate([dataset[i] for i in range(batch)])
    sides, params = {}, {}
    for name, cfg in configs.items():
        model = MODELS.build(cfg.model).to(device).train()  # speed does not hang on weights
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        params[name] = sum(p.numel() for p in model.parameters())
        sides[name] = lambda m=model, o=optim: _synced(m.train_step(data_batch, o), device)
    where = "" if device == "cpu" else f", {device}"
    s.compare(f"segmentation {decoder} {ticket.backbone}-D8, crop {crop[0]}x{crop[1]}, "
              f"b{batch}{where}",
              sides, [ratio("ticket / mmseg", "ticket", "mmseg", within(0.05))],
              info={"params": params})  # fmt: skip


def _synced(result: Any, device: str) -> Any:
    if device != "cpu":
        torch.cuda.synchronize(device)
    return result


class MMSegFrontEnd(nn.Module):
    """mmseg's ResNet where the counter expects its front-end (`forward_features`)."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.net = MODELS.build(dict(
            type="ResNet", depth=depth, num_stages=4, out_indices=(3,), strides=(1, 2, 1, 1),
            dilations=(1, 1, 2, 4), contract_dilation=False, style="pytorch",
            norm_cfg=dict(type="BN", requires_grad=True),
        ))  # fmt: skip

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(x))


def counting(s: Session, ticket: Ticket, crop: tuple[int, int], batch: int) -> None:
    torch.manual_seed(0)
    counters = {"ticket": CrowdCounter(ticket), "mmseg": CrowdCounter(ticket)}
    counters["mmseg"].frontend = MMSegFrontEnd(int(ticket.backbone.removeprefix("resnet")))
    x = torch.randn(batch, 3, *crop)
    target = torch.rand(batch, 1, crop[0] // 8, crop[1] // 8)
    sides: dict[str, Any] = {}
    for name, model in counters.items():
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-7, momentum=0.95)
        sides[name] = lambda m=model, o=opt: _count_step(m, o, x, target)
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in counters.items()}
    s.compare(f"counting {ticket.backbone}-D8 + CSRNet back-end, {crop[0]}x{crop[1]}, b{batch}",
              sides, [ratio("ticket / mmseg", "ticket", "mmseg", within(0.05))],
              info={"params": params})  # fmt: skip


def _count_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                target: torch.Tensor) -> None:  # fmt: skip
    loss = nn.functional.mse_loss(model(x), target, reduction="sum")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def run(s: Session) -> None:
    register_all_modules(init_default_scope=True)
    backbone, decoder, crop, batch = s.pick(SIZES)
    ticket = none_ticket(backbone)
    segmentation(s, ticket, decoder, crop, batch)
    counting(s, ticket, crop, batch)
