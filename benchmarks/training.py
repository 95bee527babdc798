"""Training throughput: (c) our resnet50-se vs timm's seresnet50 at equal batch and input;
(f) training with the data loader running vs with the batches already in memory.

A step is what the engine does per batch: forward, cross-entropy, backward, SGD step
(bench.engine.schedule.build_optimizer with the short preset's settings). (f) uses the
embedded default's training: Fashion-MNIST with its train transforms, the default batch
size and DataLoader workers, resnet20-se, and the engine's own training loader
(bench.engine.loop.training_data: augmenting whole batches, see
bench.data.batch_augment); the in-memory side trains on batches the same loader
produced before timing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.engine.hparams import TrainHParams
from bench.engine.schedule import build_optimizer
from bench.models.resnet import build_model
from benchmarks.harness import Session, Target, ratio

# (batch, input side) of (c); steps per side per round and the data of (f).
SIZES = {
    "default": {"c": (8, 112), "f_steps": 2},
    "full": {"c": (32, 224), "f_steps": 5},
    "quick": {"c": (2, 64), "f_steps": 1},
}
F_MODEL = "resnet20-se"  # what the embedded default trains


class Trainer:
    """One network, its optimizer and loss: `step(x, y)` is one engine training step."""

    def __init__(self, model: nn.Module, hp: TrainHParams) -> None:
        self.model = model.train()
        self.opt = build_optimizer(model, hp)
        self.loss = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        loss = self.loss(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def versus_timm(s: Session, batch: int, side: int) -> None:
    import timm

    torch.manual_seed(0)
    hp = TrainHParams()
    models = {"ours": build_model("resnet50-se"), "timm": timm.create_model("seresnet50")}
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    trainers = {k: Trainer(m, hp) for k, m in models.items()}
    x = torch.randn(batch, 3, side, side)
    y = torch.randint(0, 1000, (batch,))
    sides = {k: (lambda t=t: t.step(x, y)) for k, t in trainers.items()}
    s.compare(
        f"resnet50-se vs timm seresnet50, train step b{batch} {side}px",
        sides,
        [ratio("ours / timm", "ours", "timm", Target(lo=1.0))],
        info={"params": params, "timm": timm.__version__},
    )


def loader_cost(s: Session, steps: int, model_name: str) -> None:
    from bench.data.datasets import load_splits
    from bench.engine.distributed import DistInfo
    from bench.engine.loop import training_data

    hp = TrainHParams()
    splits = load_splits("fashion-mnist", s.data_root)
    # The engine's own training loader (sampler, batch sampler, seeded samples, workers).
    loader = training_data(splits.train, hp, DistInfo(0, 1, 0), cuda=False)["loader"]
    batches = _forever(loader)
    in_memory = [next(batches) for _ in range(steps)]
    torch.manual_seed(0)
    trainers = {side: Trainer(build_model(model_name, num_classes=splits.num_classes), hp)
                for side in ("loader", "memory")}  # fmt: skip

    def with_loader() -> None:
        for _ in range(steps):
            trainers["loader"].step(*next(batches))

    def from_memory() -> None:
        for x, y in in_memory:
            trainers["memory"].step(x, y)

    s.compare(
        f"{model_name} on Fashion-MNIST, {steps} steps of {hp.batch_size}, "
        f"{hp.num_workers} loader workers",
        {"loader": with_loader, "memory": from_memory},
        [ratio("with loader / in memory", "loader", "memory", Target(lo=0.95))],
        info={"augmentation": "per batch" if splits.train.plan is not None else "per image"},
    )


def _forever(loader: DataLoader) -> Iterator[Any]:
    """Batches of `loader`, epoch after epoch."""
    return itertools.chain.from_iterable(iter(loader) for _ in itertools.count())


def run(s: Session) -> None:
    sizes = s.pick(SIZES)
    versus_timm(s, *sizes["c"])
    loader_cost(s, sizes["f_steps"], F_MODEL)
