"""Training-throughput benchmark (not a test): prints ratios measured side by side.

1. Training images/s of our resnet50-se vs timm's seresnet50, same input and batch
   (target: ratio >= 1.0). Steps alternate between the two models so drifts in machine
   load hit both alike.
2. Data-loader images/s vs training images/s on CIFAR-format data (pickle batches read
   by torchvision, the CIFAR train transforms; target: loader >= 3x training), with the
   network the CIFAR protocol trains (resnet164-se by default).

Run: .venv/bin/python benchmarks/bench_train.py [--batch 32 --size 112 --steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
from torch.utils.data import DataLoader

from bench.cost import device_name
from bench.models.resnet import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _step_time(model, opt, x, y, device) -> float:
    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def train_throughput(
    models: dict, batch: int, size: int, steps: int, device, classes: int = 1000
) -> dict:
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    for m in models.values():
        m.to(device).train()
    for k, m in models.items():  # warm-up
        _step_time(m, opts[k], x, y, device)
    times = {k: [] for k in models}
    for _ in range(steps):
        for k, m in models.items():
            times[k].append(_step_time(m, opts[k], x, y, device))
    return {k: batch / statistics.median(v) for k, v in times.items()}


def loader_vs_training(batch: int, workers: int, steps: int, device) -> tuple[float, float]:
    from fixtures import write_cifar

    from tasks.classification.datasets import load_splits

    with tempfile.TemporaryDirectory() as tmp:
        write_cifar(Path(tmp), "cifar10", train_per_class=200, test_per_class=2)
        splits = load_splits("cifar10", tmp, heldout=10)
        loader = DataLoader(
            splits.train,
            batch_size=batch,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            persistent_workers=workers > 0,
        )
        it = iter(loader)
        next(it)
        n, t0 = 0, time.perf_counter()
        for _ in range(steps):
            try:
                xb, _ = next(it)
            except StopIteration:
                it = iter(loader)
                xb, _ = next(it)
            n += len(xb)
        load_ips = n / (time.perf_counter() - t0)
    model = build_model("resnet164-se", num_classes=10).to(device)
    ips = train_throughput({"m": model}, batch, 32, max(3, steps // 4), device, 10)["m"]
    return load_ips, ips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=112, help="input side for the R50 comparison")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device: {device_name(device)}, torch {torch.__version__}, timm {timm.__version__}")
    ips = train_throughput(
        {
            "ours resnet50-se": build_model("resnet50-se"),
            "timm seresnet50": timm.create_model("seresnet50"),
        },
        args.batch,
        args.size,
        args.steps,
        device,
    )
    for k, v in ips.items():
        print(f"  {k:<18} {v:8.1f} img/s  (batch {args.batch}, {args.size}px, train step)")
    ratio = ips["ours resnet50-se"] / ips["timm seresnet50"]
    print(f"ratio ours/timm: {ratio:.3f}  (target >= 1.0)")
    load_ips, train_ips = loader_vs_training(128, args.workers, 20, device)
    print(
        f"  CIFAR-format loader {load_ips:8.1f} img/s ({args.workers} worker(s), train "
        f"transforms)\n  resnet164-se training {train_ips:8.1f} img/s (batch 128, 32px)"
    )
    print(f"ratio loader/training: {load_ips / train_ips:.2f}  (target >= 3)")


if __name__ == "__main__":
    main()
