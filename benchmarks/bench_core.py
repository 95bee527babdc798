"""Core overhead benchmark (not a test): prints latency ratios measured side by side.

1. A ticket materialized from a supernet (apply_ticket) vs the supernet itself running
   the ticket's mask (another code path: every slot built, 0 slots skipped at run time):
   target within 2%.
2. A supernet with every slot switched off vs the plain backbone, torchvision's ResNet
   where one exists (CIFAR ResNets: our plain network): target within 1% (a 0 slot costs
   nothing: its module is not called).

Run: .venv/bin/python benchmarks/bench_core.py [--repeats N]
"""

from __future__ import annotations

import argparse

import torch

from bench.cost import device_name, measure_latencies
from bench.models.resnet import ModelConfig, SlotResNet
from bench.models.slots import apply_ticket, build_supernet
from bench.tickets import make_ticket, stages_to_mask

CASES = [
    # (label, model, sharing, mask, input shape)
    ("resnet50-se, SGE ticket mask", "resnet50", "se", "100|1011|010011|011", (1, 3, 224, 224)),
    ("resnet164-se, every 2nd slot", "resnet164", "se", None, (32, 3, 32, 32)),
]


def _plain(backbone: str) -> torch.nn.Module:
    """The reference plain network: torchvision's where it has the backbone."""
    import torchvision

    factory = getattr(torchvision.models, backbone, None)
    return factory(weights=None) if factory else SlotResNet(ModelConfig(backbone))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"device: {device_name(torch.device('cpu'))}, torch {torch.__version__}")
    rows = []
    for label, backbone, sam, stages, shape in CASES:
        n = len(SlotResNet(ModelConfig(backbone)).slot_ids)
        sizes = SlotResNet(ModelConfig(backbone)).spec.layers
        mask = stages_to_mask(stages, sizes) if stages else [i % 2 for i in range(n)]
        prov = {"kind": "baseline", "baseline": "random", "seed": 0}
        ticket = make_ticket("bench", backbone, sam, mask, prov)
        masked, all_off = build_supernet(ticket), build_supernet(ticket)
        masked.set_mask(list(ticket.mask))
        all_off.set_mask([0] * n)
        models = {
            "materialized": apply_ticket(build_supernet(ticket), ticket),
            "supernet-masked": masked,
            "supernet-all-0": all_off,
            "plain": _plain(backbone),
        }
        ms = measure_latencies(models, torch.randn(*shape), warmup=5, repeats=args.repeats)
        r1 = ms["materialized"] / ms["supernet-masked"]
        r2 = ms["supernet-all-0"] / ms["plain"]
        rows.append((label, shape, ms, r1, r2))
    print(f"{'case':<32} {'input':<14} {'mat/masked':>11} {'super0/plain':>13}  (median ms)")
    for label, shape, ms, r1, r2 in rows:
        detail = ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
        print(f"{label:<32} {'x'.join(map(str, shape)):<14} {r1:>11.3f} {r2:>13.3f}  {detail}")
    print("targets: mat/masked within 2% (0.98-1.02), super0/plain within 1% (0.99-1.01)")


if __name__ == "__main__":
    main()
