"""A hand-made tree of result records, written with the real writer (bench.runs.records), whose
leaderboard numbers are worked out by hand in tests/test_leaderboard.py.

Three resnet20-se tickets (full, none, a searched-looking one) and a random baseline that
only failed, on four benchmark cells:

  classification/cifar10   top1 (higher), seeds 0-2; the ticket's seed 3 failed
      full 92 93 94 | none 90 90.5 91 | ticket 92 92.5 93
  classification/cifar100  top1, one seed each: full 70 | none 68 | ticket 71
  crowd_counting/shanghaitech_b  mae (lower), seeds 0-1
      full 10 11 | none 13 14 | ticket 11 12
  segmentation/cityscapes  mIoU, seeds 0-1: full 70 72 | none 70.5 71.5 | ticket 71 71;
      random: both seeds failed

Costs per ticket (COSTS, LATENCY): params 300k / 280k / 290k, GFLOPs 0.08 / 0.078 / 0.0792,
latency 4 / 3 / 3.4-3.6 ms, all on one device, each seed's ratios as from one session,
whose ratio intervals (RATIO_CI) lie below 1 for none and the ticket.
Every extra metric is the value plus 5.
"""

from __future__ import annotations

from pathlib import Path

from bench.runs.records import make_record, write_record
from bench.ticket.schema import Ticket, make_ticket

TICKET_MASK = (1, 0, 1, 0, 1, 0, 1, 1, 0)  # resnet20: 3 stages x 3 blocks, 5 of 9 kept
DEVICE = "cpu fixture (2 threads)"


def tickets() -> dict[str, Ticket]:
    """full / none / ticket / random resnet20-se tickets."""

    def base(kind: str, mask: tuple[int, ...]) -> Ticket:
        prov = {"kind": "baseline", "baseline": kind, "seed": 0}
        return make_ticket(f"r20-se-{kind}", "resnet20", "se", mask, prov)

    searched = {
        "kind": "searched",
        "dataset": "cifar10",
        "split": "heldout",
        "run": "search_fixture",
        "strategy": "reinforce",
        "config_hash": "0" * 12,
        "seed": 666,
    }
    return {
        "full": base("full", (1,) * 9),
        "none": base("none", (0,) * 9),
        "ticket": make_ticket("r20_se_ticket", "resnet20", "se", TICKET_MASK, searched),
        "random": base("random", (0, 1, 0, 1, 0, 1, 0, 0, 1)),
    }


# Per ticket: params_total, params_sams, flops (a GFLOP is 1e9 flops), latency_ms per seed.
COSTS = {
    "full": (300_000, 20_000, 80_000_000),
    "none": (280_000, 0, 78_000_000),
    "ticket": (290_000, 10_000, 79_200_000),
    "random": (288_000, 8_000, 78_800_000),
}
LATENCY = {"full": (4.0, 4.0, 4.0), "none": (3.0, 3.0, 3.0), "ticket": (3.4, 3.6, 3.5)}
# The interval of each network's latency ratio to full, as its session stored it.
RATIO_CI = {"full": [1.0, 1.0], "none": [0.70, 0.80], "ticket": [0.85, 0.95]}

# (task, dataset, head, metric, higher_is_better, extras name): {ticket: [values by seed]}
CELLS = {
    ("classification", "cifar10", "linear", "top1", True, "top5"): {
        "full": [92.0, 93.0, 94.0],
        "none": [90.0, 90.5, 91.0],
        "ticket": [92.0, 92.5, 93.0],
    },
    ("classification", "cifar100", "linear", "top1", True, "top5"): {
        "full": [70.0],
        "none": [68.0],
        "ticket": [71.0],
    },
    ("crowd_counting", "shanghaitech_b", "csrnet", "mae", False, "rmse"): {
        "full": [10.0, 11.0],
        "none": [13.0, 14.0],
        "ticket": [11.0, 12.0],
    },
    ("segmentation", "cityscapes", "fcn", "mIoU", True, "aAcc"): {
        "full": [70.0, 72.0],
        "none": [70.5, 71.5],
        "ticket": [71.0, 71.0],
    },
}
PROTOCOL = {"epochs": 2, "input_size": 32, "eval": "single-scale"}


def _record(
    ticket: Ticket, kind: str, cell: tuple, seed: int, value: float | None, run_dir: Path
) -> dict:
    task, dataset, head, metric, hib, extra = cell
    params, sams, flops = COSTS[kind]
    cost = {
        "params_total": params,
        "params_sams": sams,
        "params_backbone": params - sams,
        "flops": flops,
        "gmacs": flops / 2e9,
        "input_shape": (1, 3, 32, 32),
        "latency_ms": LATENCY[kind][seed] if kind in LATENCY and value is not None else None,
        "latency_device": DEVICE if kind in LATENCY and value is not None else None,
        # As one side-by-side session (bench.cost.table) would report it.
        "latency_ratio_full": (
            LATENCY[kind][seed] / LATENCY["full"][seed]
            if kind in LATENCY and value is not None
            else None
        ),
        "latency_ratio_full_ci": RATIO_CI[kind] if kind in LATENCY and value is not None else None,
    }
    failed = value is None
    return make_record(
        ticket=ticket,
        task=task,
        dataset=dataset,
        eval_split="test",
        select_split="heldout",
        head=head,
        metric=metric,
        value=value,
        higher_is_better=hib,
        seed=seed,
        run_dir=run_dir / f"{task}_{dataset}_{kind}_{seed}",
        # The extra metric is the value plus 5, so its mean is the mean plus 5.
        extras=None if failed else {extra: value + 5.0, "per_class": [1, 2]},
        cost=None if failed else cost,
        protocol=PROTOCOL,
        status="failed" if failed else "finished",
        reason="RuntimeError: CUDA out of memory" if failed else None,
    )


def write_record_tree(out_root: Path) -> list[Path]:
    """Write every record above (and the failed ones) under out_root; return their paths."""
    t = tickets()
    paths = []
    for cell, by_ticket in CELLS.items():
        for kind, values in by_ticket.items():
            for seed, value in enumerate(values):
                rec = _record(t[kind], kind, cell, seed, value, out_root / "runs")
                paths.append(write_record(out_root, rec))
    cifar10, cityscapes = list(CELLS)[0], list(CELLS)[3]
    paths.append(write_record(out_root, _record(t["ticket"], "ticket", cifar10, 3, None, out_root)))
    for seed in (0, 1):
        rec = _record(t["random"], "random", cityscapes, seed, None, out_root)
        paths.append(write_record(out_root, rec))
    return paths
