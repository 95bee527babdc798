"""Help that reads well: every command has an example, each default is quoted once, choices
come from the registries, and `bench --help` and argument errors need no heavy import."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench.cli.commands import SUMMARIES
from bench.cli.main import build_parser, main

COMMANDS = [[name] for name in SUMMARIES] + [["ticket", a] for a in ("show", "validate", "make")]


def _help(capsys, argv: list[str]) -> str:
    assert main([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())  # one line: wrapping aside


def test_top_level_help_lists_every_command_with_examples(capsys) -> None:
    text = _help(capsys, [])
    for name, summary in SUMMARIES.items():
        assert f"{name} {summary}" in text
    assert "examples: bench list models" in text and "--import MODULE" in text


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_has_an_example_and_quotes_each_default_once(argv, capsys) -> None:
    text = _help(capsys, argv)
    assert "example: bench " + " ".join(argv) in text
    for empty in ("None", "False", "[]", '""'):
        assert f"(default: {empty})" not in text
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", text), text


def test_search_help_is_short_and_says_what_auto_means(capsys) -> None:
    assert main(["search", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bench search DATASET MODEL [options]\n")
    text = " ".join(out.split())
    assert "--preset {auto,ean,short}" in text and "(default: auto)" in text
    assert "--seeds S,S,... comma-separated search seeds (default: the preset's" in text
    assert "--sharing {block,stage} one SAM per block or one shared per stage (default: the" in text


def test_choices_come_from_the_registries(capsys) -> None:
    from bench.data.datasets import DATASETS
    from bench.models.sams import SAMS
    from bench.runs.transfer import TASKS, load_adapters
    from bench.search.strategies import STRATEGIES
    from tasks.segmentation.configs import DECODERS

    load_adapters()
    transfer = _help(capsys, ["transfer"])
    assert all(d in transfer for d in DECODERS) and len(DECODERS) == 5
    assert "--task TASK " + " | ".join([*TASKS, "all"]) in transfer
    search = _help(capsys, ["search"])
    strategies = re.search(r"--strategy \{([^}]*)\}", search)
    assert strategies and set(strategies.group(1).split(",")) == set(STRATEGIES)
    for text in (search, _help(capsys, ["train"])):
        assert all(d in text for d in DATASETS)
    assert main(["train", "fashion-mnist", "resnet20-nosam", "--mask", "full"]) == 2
    err = capsys.readouterr().err
    assert all(s in err for s in SAMS)  # an unknown SAM error lists the known ones


def test_build_parser_with_every_command_still_parses() -> None:
    args = build_parser().parse_args(["search", "cifar10", "resnet20-se", "--budget", "5"])
    assert (args.preset, args.budget, args.seeds, args.sharing) == ("auto", 5, None, None)


# A fresh interpreter per case: which heavy modules did answering import?
HEAVY = ("torch", "timm", "torchvision", "mmseg", "mmengine", "scipy")
LIGHT_NOW = [
    ["--help"],
    ["ticket", "make", "resnet20-se", "--mask", "random:1.5"],
    ["transfer", "--ticket", "t.json", "--task", "nosuch"],
    ["transfer", "--help"],
    ["list", "--help"],
    ["nosuch"],
]
# These build flags from bench.engine.hparams / bench.search.hparams, light modules whose
# packages' __init__ import the whole engine / search today (see the issue-14 note).
NEEDS_LAZY_PACKAGES = [
    ["train", "nosuch", "resnet20-se", "--mask", "full"],
    ["search", "fashion-mnist", "resnet20-se", "--heldout", "0"],
    ["search", "imagenet", "resnet50-dia", "--sharing", "block"],
    ["transfer", "--ticket", "t.json", "--task", "crowd_counting", "--opt", "flip=maybe"],
]


def _imported(argv: list[str]) -> list[str]:
    code = (
        "import sys\nfrom bench.cli.main import main\nrc = main(sys.argv[1:])\n"
        f"print(rc, *[m for m in {HEAVY!r} if m in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    rc, *heavy = proc.stdout.split("\n")[-2].split()
    assert int(rc) in (0, 2), proc.stderr
    return heavy


@pytest.mark.parametrize("argv", LIGHT_NOW, ids=" ".join)
def test_help_and_argument_errors_import_nothing_heavy(argv) -> None:
    assert _imported(argv) == []


@pytest.mark.parametrize("argv", NEEDS_LAZY_PACKAGES, ids=" ".join)
def test_flag_errors_of_hparam_commands_import_nothing_heavy(argv) -> None:
    assert _imported(argv) == []
