"""Inference cost of SAM tickets: (a) the share of the full-SAM overhead a ticket removes,
against its density; (b) the materialized ticket vs the supernet running the ticket's mask,
and the all-off supernet vs torchvision's plain ResNet-50. Batch 1 at 32 px on one thread;
at batch 64 each side runs at least 0.3 s per round (below).

Per case four networks (six for ResNet-50 SE), same weights (materialized from one supernet),
eval mode, inference_mode, random input: the ticket (materialized), full (every SAM),
none (no SAM), the supernet with the ticket's mask set and, for ResNet-50 SE, the supernet
with every slot off and torchvision's resnet50. Tickets: ResNet-50 takes the published EAN
SGE ticket's mask (tickets/resnet50-sge-stage-ean.json, density 7/16), CIFAR ResNets a
fixed random mask of density 1/2 (seed 0).

Threads: batch 1 at 32 px runs on one thread (`single_threaded`). There a second thread adds no
speed (resnet56 b1: 6.9 ms per forward on one thread or two, 2 cores) but its hand-offs
add jitter: over three fresh processes each, resnet56-cbam full/none measured
1.953/1.948/1.946 on one thread and 1.999/1.994/2.034 on two, resnet56-se
1.202/1.227/1.240 against 1.246/1.104/1.288. ResNet-50 at 224 px runs twice as fast on two
threads, and batch 64 too, so those keep the run's threads.

Batch 64 runs each side for at least BATCH_MIN_TIME per round (the run's --min-time where
longer): at 0.1 s a side was one call, and the SE overhead there (full/none 1.07-1.08) is
the difference of two nearly equal times, so its share swung between runs (0.34 to 0.63).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from bench.cli.args import TICKET_DIR
from bench.models.resnet import ModelConfig
from bench.models.slots import build_supernet, materialize
from bench.search.loop import one_thread
from bench.ticket.schema import baseline_mask, load_ticket
from benchmarks.harness import Metric, Session, Target, ratio, within

EAN_TICKET = TICKET_DIR / "resnet50-sge-stage-ean.json"
SAMS_ALL = ("se", "cbam", "eca")
BATCH_MIN_TIME = 0.3  # seconds per side per round from batch 64 (module docstring)
NATIVE_SIDE = {"resnet56": 32, "resnet164": 32, "resnet50": 224}
# (backbone, sams, batch, input side). The default fits the 10-minute run on 2 cores: the
# whole grid of batch 64 (full) alone takes longer there.
CASES = {
    "default": [
        *((b, SAMS_ALL, 1, side) for b, side in NATIVE_SIDE.items()),
        ("resnet56", SAMS_ALL, 64, 32),
        ("resnet164", ("se",), 64, 32),
    ],
    "full": [(b, SAMS_ALL, batch, side) for batch in (1, 64) for b, side in NATIVE_SIDE.items()],
    "quick": [("resnet20", ("se",), 1, 32), ("resnet20", ("se",), 8, 32)],
}


def single_threaded(batch: int, side: int) -> bool:
    """Whether a case runs on one torch thread (module docstring)."""
    return batch == 1 and side <= 32


def ticket_mask(backbone: str, n: int) -> tuple[int, ...]:
    if backbone == "resnet50":
        return load_ticket(EAN_TICKET).mask
    return baseline_mask("random", n, density=0.5, seed=0)


def overhead_removed(t: dict[str, float]) -> float:
    """(full - ticket) / (full - none): the share of the full-SAM time the ticket saves."""
    return (t["full"] - t["ticket"]) / (t["full"] - t["none"])


def networks(backbone: str, sam: str) -> tuple[dict[str, torch.nn.Module], float]:
    """The case's networks (module docstring) and the ticket's density."""
    torch.manual_seed(0)
    sup = build_supernet(ModelConfig(backbone, sam)).eval()
    n = len(sup.slot_ids)
    mask = ticket_mask(backbone, n)
    nets = {
        "ticket": materialize(sup, mask),
        "full": materialize(sup, (1,) * n),
        "none": materialize(sup, (0,) * n),
    }
    sup.set_mask(mask)
    nets["supernet@ticket"] = sup
    if backbone == "resnet50" and sam == "se":
        import torchvision

        off = materialize(sup, (1,) * n)  # a second supernet, every slot switched off
        off.set_mask((0,) * n)
        nets["supernet@0"] = off
        nets["torchvision"] = torchvision.models.resnet50(weights=None)
    return {k: m.eval() for k, m in nets.items()}, sum(mask) / n


def metrics(nets: dict[str, torch.nn.Module], density: float) -> list[Metric]:
    out = [
        Metric("full time / none time", lambda t: t["full"] / t["none"]),
        Metric("overhead removed", overhead_removed, Target(lo=(1 - density) * 0.9)),
        ratio("materialized / supernet@ticket", "ticket", "supernet@ticket", within(0.02)),
    ]
    if "torchvision" in nets:
        out.append(ratio("supernet@0 / torchvision", "supernet@0", "torchvision", within(0.02)))
    return out


def run(s: Session) -> None:
    for backbone, sams, batch, side in s.pick(CASES):
        x = torch.randn(batch, 3, side, side)
        single = single_threaded(batch, side)
        threads = 1 if single else torch.get_num_threads()
        for sam in sams:
            nets, density = networks(backbone, sam)
            sides = {k: (lambda m=m, x=x: m(x)) for k, m in nets.items()}
            with torch.inference_mode(), one_thread() if single else nullcontext():
                s.compare(
                    f"{backbone}-{sam} b{batch} {side}px" + (", 1 thread" if threads == 1 else ""),
                    sides,
                    metrics(nets, density),
                    info={
                        "density": density,
                        "input": [batch, 3, side, side],
                        "threads": threads,
                    },  # fmt: skip
                    min_time=BATCH_MIN_TIME if batch >= 64 and not s.quick else None,
                )
