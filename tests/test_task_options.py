"""One typed KEY=VALUE conversion (bench.engine.hparams.from_text) for flags and every task's
`--opt`, declared by each task's option dataclasses (bench.runs.task_options)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from bench.cli.main import build_parser
from bench.engine.hparams import TrainHParams, from_text
from bench.runs.task_options import task_options
from bench.util.errors import BenchError


@pytest.mark.parametrize(
    ("tp", "text", "default", "value"),
    [
        (int, "42", None, 42),
        (float, "1e-6", None, 1e-6),
        (bool, "false", None, False),
        (bool, "On", None, True),
        (bool, "0", None, False),
        (str, " x ", None, "x"),
        (Literal["a", "b"], "b", None, "b"),
        (tuple[int, ...], "768x1024", None, (768, 1024)),
        (tuple[int, ...], "30,60", None, (30, 60)),
        (tuple[int, ...], "", None, ()),
        (tuple[int, ...], "769", (512, 1024), (769, 769)),  # a square size
        (int | None, "none", None, None),
        (int | None, "7", None, 7),
    ],
)
def test_from_text(tp, text, default, value) -> None:
    assert from_text(tp, text, default) == value


@pytest.mark.parametrize(
    ("tp", "text", "words"),
    [
        (int, "1.5", "expected an integer"),
        (float, "nan", "finite"),
        (bool, "maybe", "expected true or false"),
        (Literal["a", "b"], "c", "expected one of a, b"),
        (tuple[int, ...], "1xq", "expected int,int,..."),
    ],
)
def test_from_text_says_what_it_expected(tp, text, words) -> None:
    with pytest.raises(ValueError, match=words):
        from_text(tp, text)


def test_crowd_options_are_typed_and_reach_the_task() -> None:
    from tasks.crowd_counting.options import CrowdOptions, resolve

    opts = task_options("crowd_counting").parse(
        {"flip": "false", "cost_size": "768x1024", "lr": "1e-6", "protocol": "csrnet"}
    )
    assert opts == {"flip": False, "cost_size": (768, 1024), "hparams": {"lr": 1e-6},
                    "protocol": "csrnet"}  # fmt: skip
    name, hp, crowd = resolve(opts, Path("unused-with-a-named-protocol"))
    assert (name, hp.lr, hp.batch_size) == ("csrnet", 1e-6, 1)  # csrnet's batch size is 1
    assert crowd == CrowdOptions(crop_size=0, crops_per_image=4, flip=False,
                                 cost_size=(768, 1024))  # fmt: skip


def test_segmentation_and_classification_options() -> None:
    from tasks.segmentation.options import SegHParams

    seg = task_options("segmentation").parse(
        {"crop": "769", "aux_head": "off", "decoder": "upernet", "log_level": "ERROR"}
    )
    assert seg == {"crop": (769, 769), "aux_head": False, "decoder": "upernet",
                   "log_level": "ERROR"}  # fmt: skip
    hp = SegHParams.from_dict({k: v for k, v in seg.items() if k != "log_level"})
    assert (hp.crop, hp.aux_head, hp.decoder) == ((769, 769), False, "upernet")
    cls = task_options("classification").parse({"train_limit": "20", "heldout": "100/class"})
    assert cls == {"train_limit": 20, "heldout": "100/class"}


def test_option_keys_are_the_dataclass_fields() -> None:
    from tasks.crowd_counting.options import CrowdOptions
    from tasks.segmentation.options import SegHParams, SegRuntime

    crowd = set(task_options("crowd_counting").options())
    fields = {f.name for f in dataclasses.fields(CrowdOptions)}
    train = {f.name for f in dataclasses.fields(TrainHParams)} - {"epochs", "seed"}
    assert crowd == fields | train | {"protocol"}
    seg = set(task_options("segmentation").options())
    runtime = {f.name for f in dataclasses.fields(SegRuntime)}
    assert runtime == {"measure_latency", "log_level", "with_cp"}
    assert seg == {f.name for f in dataclasses.fields(SegHParams)} - {"iters", "seed"} | runtime


def test_bad_options_name_the_key_and_the_type() -> None:
    crowd = task_options("crowd_counting")
    with pytest.raises(BenchError, match="--opt crop_size=big: expected an integer"):
        crowd.parse({"crop_size": "big"})
    with pytest.raises(BenchError, match=r"no option 'flop' \(options: protocol, kernel"):
        crowd.parse({"flop": "true"})
    with pytest.raises(BenchError, match="--opt protocol=slow: expected one of auto, csrnet"):
        crowd.parse({"protocol": "slow"})


def test_transfer_flags_become_typed_options_per_task() -> None:
    from bench.cli.commands.transfer import transfer_options

    argv = ["transfer", "--ticket", "t.json", "--task", "all", "--decoder", "fcn",
            "--heldout", "40", "--opt", "crowd_counting.flip=no", "--opt",
            "segmentation.crop=64x128", "--opt", "classification.train_limit=9"]  # fmt: skip
    args = build_parser("transfer").parse_args(argv)
    assert transfer_options(args) == {
        "crowd_counting": {"flip": False},
        "segmentation": {"crop": (64, 128), "decoder": "fcn"},
        "classification": {"train_limit": 9, "heldout": "40"},
    }
