"""`bench search --preset auto` (the default): the paper's protocol where the dataset has one,
the embedded default elsewhere; explicit flags still override; --epochs scales a schedule."""

from __future__ import annotations

import dataclasses

import pytest

from bench.cli.commands.search import resolve_args
from bench.cli.main import build_parser
from bench.engine.hparams import TrainHParams
from bench.search.hparams import SEARCH_PRESETS, resolve_preset


def _setup(*argv: str):
    (setup,) = resolve_args(build_parser("search").parse_args(["search", *argv]))
    return setup


@pytest.mark.parametrize(
    ("dataset", "preset", "seed", "sharing"),
    [
        ("imagenet", "ean", 666, "stage"),  # the official search (paper.md, Method)
        ("cifar10", "ean", 666, "stage"),  # the same recipe at CIFAR scale (documented in ean)
        ("cifar100", "ean", 666, "stage"),
        ("fashion-mnist", "short", 0, "block"),  # the embedded default
    ],
)
def test_auto_is_the_datasets_protocol(dataset, preset, seed, sharing) -> None:
    setup = _setup(dataset, "resnet20-se")
    assert (setup.preset.name, setup.seed, setup.config.sharing) == (preset, seed, sharing)
    expected = SEARCH_PRESETS.get(preset)(dataset)
    assert setup.preset.search == expected.search and setup.preset.supernet == expected.supernet


def test_explicit_flags_override_auto() -> None:
    setup = _setup("cifar10", "resnet20-se", "--budget", "7", "--epochs", "3", "--seeds", "1")
    assert setup.preset.name == "ean" and setup.seed == 1
    assert (setup.preset.search.budget, setup.preset.supernet.epochs) == (7, 3)
    assert setup.preset.search.steps == 300  # the rest stays the paper's
    setup = _setup("imagenet", "resnet50-se", "--preset", "short")
    assert (setup.preset.name, setup.preset.supernet.epochs, setup.config.sharing) == (
        "short", 2, "block",
    )  # fmt: skip


def test_epochs_scale_a_step_schedule(monkeypatch) -> None:
    stepped = TrainHParams(epochs=60, schedule="step", milestones=(30, 45), warmup_epochs=0)
    base = SEARCH_PRESETS.get("short")("cifar10")
    monkeypatch.setitem(
        SEARCH_PRESETS._entries, "stepped", lambda d: dataclasses.replace(base, supernet=stepped)
    )
    # 30/60 and 45/60 of 20 epochs: 10 and 15.
    assert resolve_preset("stepped", "cifar10", epochs=20).supernet.milestones == (10, 15)
    sup = resolve_preset("stepped", "cifar10", supernet={"epochs": 20}).supernet
    assert (sup.epochs, sup.milestones) == (20, (10, 15))
    # An explicit schedule wins over the scaled one; --epochs wins over --supernet-epochs.
    over = {"epochs": 20, "milestones": (2,)}
    sup = resolve_preset("stepped", "cifar10", epochs=8, supernet=over).supernet
    assert (sup.epochs, sup.milestones) == (8, (2,))
