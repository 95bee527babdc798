"""Bad command-line arguments (issue 12): each is refused in-process with exit 2 and one line
that names the flag, before any data is read or anything is written; nothing trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.cli.main import main

TRAIN = ["train", "fashion-mnist", "resnet20-se", "--mask", "full"]
SEARCH = ["search", "fashion-mnist", "resnet20-se"]
TRANSFER = ["transfer", "--ticket", "resnet50-sge-stage-ean", "--task", "crowd_counting"]
MAKE = ["ticket", "make", "resnet20-se"]
# {dir} is a directory, {file} a regular file (both exist).
CASES = [
    # device
    ([*TRAIN, "--device", "tpu"], "--device"),
    ([*SEARCH, "--device", "cuda:x"], "--device"),
    ([*TRAIN, "--device", f"cuda:{torch.cuda.device_count()}"], "--device"),  # one too many
    # sizes, limits and budgets
    ([*TRAIN, "--train-limit", "-5"], "--train-limit"),
    ([*TRAIN, "--train-limit", "0"], "--train-limit"),
    ([*TRAIN, "--heldout", "0"], "--heldout"),
    ([*SEARCH, "--heldout", "0"], "--heldout"),
    ([*SEARCH, "--heldout", "0/class"], "--heldout"),
    ([*SEARCH, "--heldout", "ten"], "--heldout"),
    ([*TRAIN, "--epochs", "0"], "--epochs"),
    ([*SEARCH, "--epochs", "-1"], "--epochs"),
    ([*SEARCH, "--iters", "0"], "--iters"),
    ([*TRANSFER, "--iters", "-2"], "--iters"),
    ([*SEARCH, "--budget", "-3"], "budget"),
    ([*SEARCH, "--supernet-batch-size", "0"], "batch_size"),
    ([*TRAIN, "--batch-size", "0"], "batch_size"),
    ([*TRAIN, "--image-size", "0"], "--image-size"),
    ([*TRAIN, "--iters", "3"], "--epochs"),
    # seeds
    ([*TRAIN, "--seeds", str(2**64)], "--seeds"),
    ([*TRAIN, "--seeds", "-1"], "--seeds"),
    ([*SEARCH, "--seeds", "1,x"], "--seeds"),
    ([*SEARCH, "--seeds", ","], "--seeds"),
    ([*MAKE, "--mask", "random:0.5", "--seed", str(2**63)], "--seed"),
    # files
    ([*TRAIN, "--out", "{file}"], "--out"),
    ([*SEARCH, "--out", "{file}"], "--out"),
    ([*TRAIN, "--init-from", "{dir}/missing.pt"], "--init-from"),
    ([*TRAIN, "--init-from", "{dir}"], "--init-from"),
    ([*TRANSFER, "--init-from", "{dir}"], "--init-from"),
    ([*SEARCH, "--save-ticket", "{dir}/t.txt"], "--save-ticket"),
    # masks
    ([*MAKE, "--mask", "random:1.5"], "--mask"),
    ([*MAKE, "--mask", "random:"], "--mask"),
    ([*MAKE, "--mask", "ean:1,x"], "--mask"),
    ([*MAKE, "--mask", "1012"], "--mask"),
    ([*TRAIN[:3], "--mask", "random:1.5"], "--mask"),
    ([*TRAIN[:3], "--mask", "101|010|111"], "--mask"),
    # names: datasets, models, tasks, decoders, strategies, presets, controls, commands
    (["train", "nosuch", "resnet20-se", "--mask", "full"], "DATASET"),
    (["search", "svhn", "resnet20-se"], "DATASET"),
    (["train", "fashion-mnist", "resnet21-se", "--mask", "full"], "MODEL"),
    (["search", "fashion-mnist", "resnet20-nosam"], "MODEL"),
    (["search", "fashion-mnist", "resnet20"], "MODEL"),
    ([*MAKE[:2], "resnet20", "--mask", "full"], "MODEL"),
    (["transfer", "--ticket", "x", "--task", "nosuch"], "--task"),
    ([*TRANSFER, "--dataset", "cifar10"], "--dataset"),
    ([*TRANSFER, "--decoder", "nosuch"], "--decoder"),
    ([*SEARCH, "--strategy", "annealing"], "--strategy"),
    ([*SEARCH, "--preset", "long"], "--preset"),
    ([*TRAIN, "--preset", "long"], "--preset"),
    ([*TRANSFER, "--pretrained", "svhn"], "--pretrained"),
    ([*TRANSFER, "--pretrained-preset", "long"], "--pretrained-preset"),
    ([*TRANSFER[:3], "--task", "classification", "--preset", "long"], "--preset"),
    ([*TRAIN, "--controls", "full,most"], "--controls"),
    ([*TRANSFER, "--controls", "all"], "--controls"),
    ([*TRAIN, "--sharing", "layer"], "--sharing"),
    (["nosuch"], "COMMAND"),
    (["list", "nosuch"], "what"),
    (["list", "options", "nosuch"], "nosuch"),
    (["--import", "no_such_module_here", "list", "sams"], "--import no_such_module_here"),
    # task options
    ([*TRANSFER, "--opt", "nosuchkey=1"], "nosuchkey"),
    ([*TRANSFER, "--opt", "flip=maybe"], "flip=maybe"),
    ([*TRANSFER, "--opt", "cost_size=axb"], "cost_size=axb"),
    ([*TRANSFER, "--opt", "sigma=-1"], "sigma"),
    ([*TRANSFER, "--opt", "kernel=gauss"], "kernel=gauss"),
    ([*TRANSFER, "--opt", "crop_size"], "--opt"),
    ([*TRANSFER, "--opt", "segmentation.crop=64xabc"], "crop=64xabc"),
    ([*TRANSFER, "--opt", "segmentation.heads=3"], "heads"),
    ([*TRANSFER, "--opt", "classification.train_limit=0"], "train_limit"),
    ([*TRANSFER[:3], "--task", "all", "--opt", "crop=256"], "--opt crop"),
    ([*TRANSFER, "--opt", "nosuchtask.crop=256"], "nosuchtask"),
    ([*TRANSFER[:3], "--task", "classification", "--heldout", "0"], "--heldout"),
    ([*TRANSFER[:3], "--task", "classification", "--train-limit", "0"], "--train-limit"),
    # preset search space
    (["search", "imagenet", "resnet50-dia", "--sharing", "block"], "--sharing"),
]


def _argv(argv: list[str], tmp_path: Path) -> list[str]:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir(exist_ok=True)
    return [a.format(file=tmp_path / "a-file", dir=tmp_path / "a-dir") for a in argv]


@pytest.mark.parametrize(
    ("argv", "flag"), CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES]
)
def test_bad_argument_is_one_line_exit_2(argv, flag, tmp_path, capsys) -> None:
    out = tmp_path / "runs"
    argv = _argv(argv, tmp_path)
    runs = argv[0] in ("train", "search", "transfer") and "--out" not in argv
    extra = ["--out", str(out), "--data-root", str(tmp_path / "no-data")] if runs else []
    if argv[:2] == ["ticket", "make"]:
        extra = ["-o", str(out / "t.json")]
    assert main([*argv, *extra]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("bench: error:"), err
    assert flag in err and "Traceback" not in err, err
    assert not out.exists()  # nothing written, no run directory


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tmp_path, capsys) -> None:
    assert main([*TRAIN, "--device", "cuda", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cuda: this machine has no CUDA" in err
    assert not (tmp_path / "runs").exists()


def test_help_exits_0(capsys) -> None:
    assert main(["--help"]) == 0 and main(["train", "--help"]) == 0
    assert "bench train DATASET MODEL" in capsys.readouterr().out
