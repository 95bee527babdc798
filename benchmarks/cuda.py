"""On one GPU: (c) our resnet50-se vs timm's seresnet50 training with AMP bf16 and
channels_last, and (g) the SAM-free ticket backbone vs mmseg's ResNetV1c in segmentation.

The same cases as benchmarks.training and benchmarks.segmentation, on cuda:0; each side
waits for its kernels (torch.cuda.synchronize) so that a round times the GPU's work, not
its queueing. Skipped (one line) on a machine without CUDA. `make gpu-check` runs it.
"""

from __future__ import annotations

import torch

from bench.engine.hparams import TrainHParams
from bench.models.resnet import build_model
from bench.util.errors import BenchError
from benchmarks.harness import Session, Target, ratio
from benchmarks.training import Trainer

# (batch, input side) of (c)
SIZES = {"default": (64, 224), "full": (128, 224), "quick": (8, 112)}
DEVICE = "cuda:0"


class AmpTrainer(Trainer):
    """Trainer's step under bf16 autocast, waiting for the GPU at its end."""

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = self.loss(self.model(x).float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        torch.cuda.synchronize(DEVICE)


def versus_timm_amp(s: Session, batch: int, side: int) -> None:
    import timm

    torch.manual_seed(0)
    hp = TrainHParams()
    models = {"ours": build_model("resnet50-se"), "timm": timm.create_model("seresnet50")}
    trainers = {
        k: AmpTrainer(m.to(DEVICE, memory_format=torch.channels_last), hp)
        for k, m in models.items()
    }
    x = torch.randn(batch, 3, side, side, device=DEVICE).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 1000, (batch,), device=DEVICE)
    s.compare(
        f"resnet50-se vs timm seresnet50, train step b{batch} {side}px, {DEVICE} bf16 "
        "channels_last",
        {k: (lambda t=t: t.step(x, y)) for k, t in trainers.items()},
        [ratio("ours / timm", "ours", "timm", Target(lo=1.0))],
        info={"gpu": torch.cuda.get_device_name(DEVICE), "timm": timm.__version__},
    )


def run(s: Session) -> None:
    if not torch.cuda.is_available():
        raise BenchError("no CUDA on this machine: nothing to measure")
    versus_timm_amp(s, *s.pick(SIZES))
    from benchmarks import segmentation as seg

    seg.register_all_modules(init_default_scope=True)
    # A GPU takes mmseg's Cityscapes crop in seconds: the full size unless --quick.
    backbone, decoder, crop, batch = seg.SIZES["quick" if s.quick else "full"]
    seg.segmentation(s, seg.none_ticket(backbone), decoder, crop, batch, device=DEVICE)
