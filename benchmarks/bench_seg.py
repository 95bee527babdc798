"""Segmentation overhead benchmark (not a test): training iterations per second, side by side.

Same decoder, crop and batch for every model; one mmseg `train_step` (data preprocessor,
forward, both losses, backward, SGD step) per model per round, round-robin with the
starting model rotating, so machine load hits all alike; medians over rounds.

1. The SAM-free ticket backbone (TicketResNet, deep stem, D8) vs mmseg's own ResNetV1c-D8:
   target within 5% (ratio 0.95-1.05). With equal weights their outputs are identical
   (tests/test_seg_backbone.py), so this is the adapter's overhead only.
2. The full-SAM network vs the ticket (the shipped resnet50-sge-stage-ean by default).

The batch is real: the fixture photo (tasks.segmentation.sample) through mmseg's Cityscapes
training pipeline at the crop size.

Run: .venv/bin/python benchmarks/bench_seg.py [--decoder pspnet] [--crop 256,512]
     [--batch 2] [--rounds 6] [--device cpu] [--ticket tickets/resnet50-sge-stage-ean.json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.cost import device_name
from bench.tickets import baseline_mask, load_ticket, make_ticket
from tasks.segmentation import compat
from tasks.segmentation.configs import DECODERS, SegHParams, mmseg_resnet_v1c, segmentation_config
from tasks.segmentation.sample import write_cityscapes_sample

ROOT = Path(__file__).resolve().parents[1]

compat.ensure()

from mmengine.dataset import pseudo_collate  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmseg.registry import DATASETS, MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

import tasks.segmentation.backbone  # noqa: E402, F401  (registers TicketResNet)


def _depth(backbone: str) -> int:
    return int(backbone.removeprefix("resnet"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--decoder", default="pspnet", choices=DECODERS.list())
    ap.add_argument("--crop", default="256,512", help="H,W of the training crop")
    ap.add_argument("--batch", type=int, default=2, help="images per iteration")
    ap.add_argument("--rounds", type=int, default=6, help="timed iterations per model")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations per model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ticket", type=Path, default=ROOT / "tickets/resnet50-sge-stage-ean.json")
    args = ap.parse_args()
    register_all_modules(init_default_scope=True)
    torch.manual_seed(0)
    device = torch.device(args.device)
    crop = tuple(int(v) for v in args.crop.split(","))
    ticket = load_ticket(args.ticket)
    n = ticket.total
    prov = {"kind": "baseline", "baseline": "", "seed": 0}
    none = make_ticket("none", ticket.backbone, ticket.sam, baseline_mask("none", n), prov,
                       sam_args=ticket.sam_args, sharing=ticket.sharing)  # fmt: skip
    full = make_ticket("full", ticket.backbone, ticket.sam, baseline_mask("full", n), prov,
                       sam_args=ticket.sam_args, sharing=ticket.sharing)  # fmt: skip
    hp = SegHParams(decoder=args.decoder, crop=crop, image_size=crop, batch_size=args.batch)

    with tempfile.TemporaryDirectory() as tmp:
        data = write_cityscapes_sample(Path(tmp) / "cs", size=crop, train=args.batch, val=1)
        norm = dict(type="BN", requires_grad=True)
        os_ = DECODERS.get(args.decoder).output_stride
        kw = dict(data_root=data, work_dir=tmp, device=args.device)
        ref_backbone = mmseg_resnet_v1c(_depth(ticket.backbone), norm, os_)
        configs = {
            "mmseg ResNetV1c": segmentation_config(none, hp, backbone=ref_backbone, **kw),
            "ticket-arch none": segmentation_config(none, hp, **kw),
            "full SAM": segmentation_config(full, hp, **kw),
            "ticket": segmentation_config(ticket, hp, **kw),
        }
        cfg0 = next(iter(configs.values()))
        dataset = DATASETS.build(cfg0.train_dataloader.dataset)
        torch.manual_seed(0)
        batch = pseudo_collate([dataset[i] for i in range(args.batch)])

    models, optims = {}, {}
    for name, cfg in configs.items():
        model = MODELS.build(cfg.model)  # weights do not matter for speed: no init_weights
        models[name] = model.to(device).train()
        optims[name] = build_optim_wrapper(model, cfg.optim_wrapper)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in models}
    names = list(models)
    for r in range(args.warmup + args.rounds):
        # Rotate who goes first: the first model of a round runs on a colder cache/allocator.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            model = models[name]
            sync()
            t0 = time.perf_counter()
            model.train_step(batch, optims[name])
            sync()
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    its = {k: 1.0 / statistics.median(v) for k, v in times.items()}
    params = {k: sum(p.numel() for p in m.parameters()) / 1e6 for k, m in models.items()}

    print(
        f"device: {device_name(device)}, torch {torch.__version__}; {args.decoder}, "
        f"{ticket.backbone}-D{os_}, crop {crop[0]}x{crop[1]}, batch {args.batch}, "
        f"{args.rounds} rounds (+{args.warmup} warm-up)"
    )
    print(f"{'model':<18} {'it/s':>8} {'s/it':>8} {'params(M)':>10}")
    for k in models:
        print(f"{k:<18} {its[k]:>8.3f} {1 / its[k]:>8.3f} {params[k]:>10.2f}")
    r1 = its["ticket-arch none"] / its["mmseg ResNetV1c"]
    r2 = its["ticket"] / its["full SAM"]
    r3 = its["ticket"] / its["ticket-arch none"]
    print(f"no-SAM ticket backbone / mmseg ResNetV1c-D8: {r1:.3f} (target 0.95-1.05)")
    print(f"ticket ({ticket.stages}) / full SAM:  {r2:.3f} (speed-up of the ticket)")
    print(f"ticket / no-SAM backbone:              {r3:.3f} (cost of the ticket's SAMs)")


if __name__ == "__main__":
    main()
