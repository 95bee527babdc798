"""Train a ticket (or a control) from scratch on a classification dataset, and score it.

One call = one (ticket, dataset, seed) cell: a hashed run directory (skip if finished,
resume if not), training with the engine (model selection on the held-out split), one
final evaluation of the selected weights on the test split, and the uniform record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from bench.cost import measure_cost
from bench.engine import TrainHParams, evaluate, prepare_run, train
from bench.engine.checkpoint import load_checkpoint
from bench.engine.distributed import dist_info
from bench.engine.rundir import RESULT_FILE
from bench.errors import BenchError
from bench.io import atomic_write_json, read_json
from bench.models.resnet import SlotResNet
from bench.models.slots import build_ticket_model
from bench.paths import file_sha256
from bench.results import make_record, write_record
from bench.tickets import Ticket, baseline_mask, make_ticket

TASK = "classification"
HEAD = "linear"
# The paper's protocol per dataset (paper.md, "Training protocols used by this line of
# work"); the embedded default gets the short CPU preset.
DEFAULT_PRESET = {
    "cifar10": "cifar-resnet164",
    "cifar100": "cifar-resnet164",
    "imagenet": "imagenet-resnet50",
    "fashion-mnist": "short",
}


@dataclass(frozen=True)
class DataOptions:
    """How the dataset is read: where, which held-out split, and optional limits."""

    data_root: Path | None = None
    heldout: int | str | None = None
    split_seed: int = 0
    image_size: int | None = None
    train_limit: int | None = None  # first N of a seeded shuffle of train (quick runs)


def control_tickets(ticket: Ticket, seed: int) -> list[Ticket]:
    """full, none and a random mask of the ticket's density, for the same network."""
    out = []
    for kind in ("full", "none", "random"):
        density = ticket.density if kind == "random" else None
        mask = baseline_mask(kind, ticket.total, density=density, seed=seed)
        prov: dict[str, Any] = {"kind": "baseline", "baseline": kind, "seed": seed}
        suffix = kind
        if kind == "random":
            prov["density"] = round(ticket.density, 6)
            suffix = f"random{ticket.density:.2f}-s{seed}"
        out.append(
            make_ticket(
                f"{ticket.model_name}-{ticket.sharing}-{suffix}",
                ticket.backbone,
                ticket.sam,
                mask,
                prov,
                sam_args=ticket.sam_args,
                sharing=ticket.sharing,
            )
        )
    return out


def load_init(model: SlotResNet, path: Path) -> None:
    """Start from a checkpoint's weights (weights_only); a head of another size is skipped."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        raise BenchError(f"{path}: expected a state dict or a checkpoint with 'model'")
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    own = model.state_dict()
    head = {k for k in state if k.startswith("fc.") and k in own and state[k].shape != own[k].shape}
    state = {k: v for k, v in state.items() if k not in head}
    missing = [k for k in own if k not in state and k not in head]
    extra = [k for k in state if k not in own]
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has unexpected {extra[0]}"
        raise BenchError(f"{path}: weights do not fit {model.config.name} (the file {what})")
    model.load_state_dict({**own, **state}, strict=True)


def _limit(dataset, n: int | None, seed: int):
    if n is None or n >= len(dataset):
        return dataset
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, sorted(order[:n].tolist()))


def train_cell(
    ticket: Ticket,
    dataset: str,
    hp: TrainHParams,
    *,
    out_root: Path,
    data: DataOptions = DataOptions(),
    device: str = "cpu",
    init_from: Path | None = None,
    mode: str = "new",
    preset: str | None = None,
    progress: bool | None = None,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train and score one cell; returns its record (also written to <out>/records)."""
    from tasks.classification.datasets import load_splits

    splits = load_splits(
        dataset,
        data.data_root,
        heldout=data.heldout,
        split_seed=data.split_seed,
        image_size=data.image_size,
    )
    train_set = _limit(splits.train, data.train_limit, data.split_seed)
    identity = {
        "task": TASK,
        "dataset": dataset,
        "model": ticket.model_name,
        "ticket": ticket.checksum,
        "heldout": splits.info["heldout_sha256"],
        "image_size": data.image_size,
        "train_limit": data.train_limit,
        "init_from": file_sha256(init_from, 16) if init_from else None,
    }
    plan = prepare_run(out_root, "train", identity, hp, mode=mode)
    info = dist_info()
    if plan.action == "skip":
        if info.is_main:
            print(f"finished already: {plan.path} (use --mode cover to rerun)")
        return read_json(plan.path / RESULT_FILE)
    if info.is_main:
        print(f"{'resuming' if plan.action == 'resume' else 'starting'} {ticket.name} on "
              f"{dataset} (seed {hp.seed}): {plan.path}")  # fmt: skip

    torch.manual_seed(hp.seed)  # the model's initial weights are part of the seeded run
    model = build_ticket_model(ticket, num_classes=splits.num_classes)
    if init_from is not None:
        load_init(model, init_from)
    out = train(
        model,
        train_set,
        {"heldout": splits.heldout},
        hp,
        plan.path,
        device,
        select_on="heldout",
        progress=progress,
        stop_after_epoch=stop_after_epoch,
    )
    if not out["complete"]:
        return {"status": "interrupted", "run_dir": str(plan.path), "epochs": out["epochs"]}

    # Final numbers: the held-out-selected weights, scored once on the test split.
    best = load_checkpoint(plan.path / "best.pt")
    model.load_state_dict(best["model"])
    test = evaluate(model, splits.test, device, hp.eval_batch_size, num_workers=hp.num_workers)
    record = None
    if info.is_main:
        c, h, w = splits.input_size
        cost = measure_cost(model.cpu(), (1, c, h, w), device=device)
        record = make_record(
            ticket=ticket,
            task=TASK,
            dataset=dataset,
            eval_split="test",
            select_split="heldout",
            head=HEAD,
            metric="top1",
            value=test["top1"],
            higher_is_better=True,
            seed=hp.seed,
            run_dir=plan.path,
            extras={
                "top5": test["top5"],
                "test_loss": test["loss"],
                "n_test": test["n"],
                "heldout_top1": out["best"]["top1"],
                "best_epoch": out["best"]["epoch"],
                "final_heldout_top1": out["final"]["heldout"]["top1"],
                "data_root": splits.info.get("root"),
                "init_from": str(init_from) if init_from else None,
                "world_size": out["world_size"],
            },
            cost=cost,
            protocol={
                "preset": preset,
                "epochs": hp.epochs,
                "steps": out["steps"],
                "batch_size": hp.batch_size,
                "input_size": list(splits.input_size),
                "eval_mode": "single crop, eval transforms",
                "split": {k: v for k, v in splits.info.items() if k != "root"},
                "train_size": len(train_set),
                "init": "checkpoint" if init_from else "scratch",
                "hparams": {k: v for k, v in hp.to_dict().items() if k != "seed"},
            },
        )
        write_record(out_root, record)
        atomic_write_json(plan.path / RESULT_FILE, record)
    return record or {}


def eval_checkpoint(
    ticket: Ticket,
    checkpoint: Path,
    dataset: str,
    split: str,
    *,
    out_root: Path,
    data: DataOptions = DataOptions(),
    device: str = "cpu",
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a checkpoint of the ticket network on one split; write and return a record."""
    from tasks.classification.datasets import load_splits

    if split not in ("heldout", "test"):
        raise BenchError(f"--split {split!r}: expected heldout or test")
    splits = load_splits(dataset, data.data_root, heldout=data.heldout,
                         split_seed=data.split_seed, image_size=data.image_size)  # fmt: skip
    model = build_ticket_model(ticket, num_classes=splits.num_classes)
    load_init(model, checkpoint)
    if model.fc.out_features != splits.num_classes:
        raise BenchError(f"{checkpoint}: head has {model.fc.out_features} classes")
    m = evaluate(model, getattr(splits, split), device, batch_size)
    c, h, w = splits.input_size
    record = make_record(
        ticket=ticket,
        task=TASK,
        dataset=dataset,
        eval_split=split,
        select_split=None,
        head=HEAD,
        metric="top1",
        value=m["top1"],
        higher_is_better=True,
        seed=seed,
        run_dir=checkpoint.parent,
        extras={"top5": m["top5"], "loss": m["loss"], "n": m["n"], "checkpoint": str(checkpoint)},
        cost=measure_cost(model, (1, c, h, w), device=device),
        protocol={"eval_mode": "single crop, eval transforms", "split": splits.info},
    )
    write_record(out_root, record)
    return record


def with_seed(hp: TrainHParams, seed: int, epochs: int | None) -> TrainHParams:
    return replace(hp, seed=seed, **({"epochs": epochs} if epochs is not None else {}))


def records_table(records: list[dict[str, Any]]) -> str:
    """Ticket vs controls at a glance: test metric, held-out score, params, latency, run."""
    rows = [r for r in records if r.get("result")]
    if not rows:
        return ""
    lines = [
        f"{'ticket':<38} {'seed':>4} {'stages':<14} {'test':>7} {'heldout':>7} "
        f"{'params':>9} {'latency':>9}  run"
    ]
    for r in rows:
        i, res, c = r["identity"], r["result"], r["cost"]
        sel = res["extras"].get("heldout_top1")
        lat = c.get("latency_ms")
        lines.append(
            f"{i['ticket']:<38} {r['provenance']['seed']:>4} {i['stages']:<14} "
            f"{res['value']:7.2f} {'' if sel is None else f'{sel:7.2f}':>7} "
            f"{c['params_total'] / 1e6:8.3f}M {'' if lat is None else f'{lat:7.2f}ms':>9}  "
            f"{r['provenance']['run_dir']}"
        )
    return "\n".join(lines)
