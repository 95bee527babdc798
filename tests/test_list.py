"""`bench list datasets|presets|tasks|options`: printed from the registries and dataclasses."""

from __future__ import annotations

import dataclasses

from bench.cli.main import main
from bench.engine.hparams import PRESETS
from bench.search.hparams import SEARCH_PRESETS


def _out(capsys, *argv: str) -> str:
    assert main(["list", *argv]) == 0
    return capsys.readouterr().out


def test_list_datasets_says_where_each_is_read(capsys) -> None:
    from bench.runs.transfer import TASKS, load_adapters

    load_adapters()
    out = _out(capsys, "datasets")
    assert out.startswith("<data-root>: --data-root, else $TICKETBENCH_DATA, else ./data")
    for task in TASKS:
        assert f"\n{task}:\n" in out
        for dataset in TASKS.get(task).datasets:
            assert f"\n  {dataset} " in out
    assert "part_A/{train,test}_data/images/IMG_<n>.jpg" in out and "gtFine" in out
    assert _out(capsys, "datasets", "cifar*").count("\n  cifar") == 2


def test_list_presets_shows_their_numbers_and_what_auto_means(capsys) -> None:
    out = " ".join(_out(capsys, "presets").split())
    for name in PRESETS:
        assert f" {name} " in out
    # cifar-resnet164 (paper.md): 164 epochs, batch 128, lr 0.1 x0.1 at 81 and 122.
    assert "cifar-resnet164 164 epochs, batch 128, SGD lr 0.1 x0.1 at 81,122" in out
    assert "auto: cifar10 cifar-resnet164, cifar100 cifar-resnet164, imagenet imagenet-" in out
    assert "auto: imagenet ean, cifar10 ean, cifar100 ean, fashion-mnist short" in out
    for name in SEARCH_PRESETS:
        assert f" {name} " in out or f" {name} (" in out
    # The official ImageNet supernet: 40 epochs at constant lr 0.1, batch 256; 300 steps x 3.
    assert "ean (imagenet) supernet 40 epochs, batch 256, SGD lr 0.1 constant" in out
    assert "search: 300 steps x 3, budget 900 on the whole held-out split" in out
    assert "csrnet CSRNet's optimizer" in out and "40k 40,000 iterations" in out


def test_list_tasks(capsys) -> None:
    out = " ".join(_out(capsys, "tasks").split())
    assert "crowd_counting mae (lower is better); trains by epochs or iters" in out
    assert "segmentation mIoU (higher is better); trains by iters; datasets: cityscapes" in out


def test_list_options_prints_every_field_with_type_default_and_help(capsys) -> None:
    from tasks.crowd_counting.options import PROTOCOLS, CrowdOptions

    out = _out(capsys, "options", "crowd_counting")
    assert out.startswith("crowd_counting: bench transfer --task crowd_counting --opt KEY=VALUE")
    for f in dataclasses.fields(CrowdOptions):
        assert f"\n  {f.name} (" in out
        assert " ".join(f.metadata["help"].split()[:4]) in " ".join(out.split())
    csrnet, short = PROTOCOLS.get("csrnet").options, PROTOCOLS.get("short").options
    assert (csrnet.crop_size, short.crop_size) == (0, 64)
    # Each field's declared range shows with its type (a crop of 0 means half the image).
    assert "\n  crop_size (int >= 0; default: csrnet 0, short 64)\n" in out
    assert "\n  val_fraction (float in (0, 1); default: csrnet 0.1, short 0.25)\n" in out
    assert "\n  flip (bool; default: true)\n" in out
    assert "\n  kernel (auto|adaptive|fixed; default: auto)\n" in out
    assert "\n  lr (float > 0; default: csrnet 1e-07, short 0.001)\n" in out
    everything = _out(capsys, "options")
    for task in ("classification", "crowd_counting", "segmentation"):
        assert f"{task}: bench transfer --task {task} --opt KEY=VALUE" in everything
    assert "\n  decoder (deeplabv3|deeplabv3plus|fcn|pspnet|upernet; default: pspnet)\n" in (
        everything
    )
