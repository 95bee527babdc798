"""`bench search --preset ean`: the official search space, seed and held-out split.

Official code: gbup-group/EAN-efficient-attention-network (paper.md, "Method" and "Details").
Nothing here trains: the search arguments are resolved (`resolve_args` / `resolve_search`)
and the networks built; the held-out rule is checked on labels and on a tiny ImageNet tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_imagefolder

from bench.cli.commands.search import resolve_args
from bench.cli.main import build_parser, main
from bench.cost.measure import count_params
from bench.data.datasets import DATASETS, HeldoutRule, heldout_indices, load_splits
from bench.models.resnet import build_model
from bench.models.sams import create_sam
from bench.models.slots import build_supernet
from bench.search.hparams import resolve_preset
from bench.search.run import resolve_search
from bench.util.errors import BenchError

STAGE_CHANNELS = (256, 512, 1024, 2048)  # ResNet-50's bottleneck outputs, one DIA cell each


def _resolve(*argv: str):
    args = build_parser().parse_args(["search", *argv])
    return resolve_args(args)


def _official_dia_params() -> int:
    """Extra parameters of the official shared DIA (forward_config_dia_fbresnet.py, small_cell).

    Per stage ONE cell; its input map and its hidden map are each
    Linear(C, C//20) -> ReLU -> Linear(C//20, 4C), biases included:
        map(C) = C*(C//20) + C//20 + (C//20)*4C + 4C
    C=256  (h=12):   3,072 +  12 +  12,288 + 1,024 =    16,396; x2 =    32,792
    C=512  (h=25):  12,800 +  25 +  51,200 + 2,048 =    66,073; x2 =   132,146
    C=1024 (h=51):  52,224 +  51 + 208,896 + 4,096 =   265,267; x2 =   530,534
    C=2048 (h=102): 208,896 + 102 + 835,584 + 8,192 = 1,052,774; x2 = 2,105,548
    total 32,792 + 132,146 + 530,534 + 2,105,548 = 2,801,020
    """
    total = 0
    for c in STAGE_CHANNELS:
        h = c // 20
        total += 2 * (c * h + h + h * 4 * c + 4 * c)
    assert total == 32_792 + 132_146 + 530_534 + 2_105_548 == 2_801_020
    return total


def test_ean_dia_is_the_official_search_space() -> None:
    (setup,) = _resolve("imagenet", "resnet50-dia", "--preset", "ean")
    config = setup.config
    assert (config.backbone, config.sam, config.sharing) == ("resnet50", "dia", "stage")
    assert config.sam_args == {"reduction": 20} and setup.seed == 666
    assert setup.preset.name == "ean" and setup.preset.search.steps == 300
    with torch.random.fork_rng(devices=[]):
        plain, _ = count_params(build_model("resnet50", num_classes=1000))
        total, in_sams = count_params(build_supernet(config, num_classes=1000))
    assert total - plain == in_sams == _official_dia_params() == 2_801_020


def test_ean_seed_and_sharing_defaults_only_when_not_given() -> None:
    (setup,) = _resolve("imagenet", "resnet50-dia", "--preset", "ean", "--seeds", "0")
    assert setup.seed == 0  # an explicit 0 is not "not given"
    seeds = [
        s.seed for s in _resolve("imagenet", "resnet50-dia", "--preset", "ean", "--seeds", "1,2")
    ]
    assert seeds == [1, 2]
    # Repeating the official values is fine.
    argv = ["--preset", "ean", "--sharing", "stage", "--sam-arg", "reduction=20"]
    (setup,) = _resolve("imagenet", "resnet50-dia", *argv)
    assert (setup.config.sharing, setup.config.sam_args) == ("stage", {"reduction": 20})
    # The short preset keeps its defaults: per-block SAMs, the SAM's own options, seed 0.
    (setup,) = _resolve("imagenet", "resnet50-dia", "--preset", "short")
    assert (setup.config.sharing, setup.config.sam_args, setup.seed) == ("block", {}, 0)
    (setup,) = _resolve(
        "imagenet", "resnet50-dia", "--preset", "short", "--sharing", "stage",
        "--sam-arg", "reduction=4",
    )  # fmt: skip
    assert (setup.config.sharing, setup.config.sam_args) == ("stage", {"reduction": 4})
    # The direct API reads None as "not given" too; the preset carries the seed.
    setup = resolve_search("imagenet", "resnet50-dia", preset="ean")
    assert setup.seed == resolve_preset("ean", "imagenet").seed == 666
    assert resolve_search("imagenet", "resnet50-dia", preset="ean", seed=5).seed == 5


def test_ean_sge_and_se_resolve_to_the_official_modules() -> None:
    (sge,) = _resolve("imagenet", "resnet50-sge", "--preset", "ean")
    assert (sge.config.sharing, sge.config.sam_args) == ("stage", {"groups": 64})
    (se,) = _resolve("imagenet", "resnet50-se", "--preset", "ean")
    assert se.config.sharing == "stage"
    assert se.config.sam_args == {"rd_ratio": 1 / 16, "rd_divisor": 1}
    # Official shared SE: 1x1 convs with bias, hidden exactly C//16 (timm's default divisor
    # 8 would round it), so C=2048 -> 128 -> 2048.
    module = create_sam("se", 2048, **se.config.sam_args)
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(2048, 128), (128, 2048)]
    assert all(m.bias is not None and m.kernel_size == (1, 1) for m in convs)
    expected = sum(c * (c // 16) + c // 16 + (c // 16) * c + c for c in STAGE_CHANNELS)
    with torch.random.fork_rng(devices=[]):
        _, in_sams = count_params(build_supernet(se.config, num_classes=1000))
    assert in_sams == expected == 700_400


def test_ean_other_sams_share_per_stage_with_their_own_options() -> None:
    (setup,) = _resolve(
        "imagenet", "resnet50-cbam", "--preset", "ean", "--sam-arg", "rd_ratio=0.25"
    )
    assert (setup.config.sharing, setup.config.sam_args) == ("stage", {"rd_ratio": 0.25})


@pytest.mark.parametrize(
    ("model", "flags", "needles"),
    [
        ("resnet50-dia", ["--sharing", "block"], ["--sharing stage", "--sharing block"]),
        ("resnet50-dia", ["--sam-arg", "reduction=4"], ["reduction is 20", "reduction=4"]),
        ("resnet50-sge", ["--sam-arg", "groups=32"], ["groups is 64", "groups=32"]),
        ("resnet50-se", ["--sam-arg", "rd_divisor=8"], ["rd_divisor is 1", "rd_divisor=8"]),
    ],
)
def test_ean_refuses_a_conflicting_flag_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, flags: list, needles: list
) -> None:
    out = tmp_path / "runs"
    argv = ["search", "imagenet", model, "--preset", "ean", *flags]
    argv += ["--out", str(out), "--data-root", str(tmp_path / "no-imagenet-here")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench: error: --preset ean:")
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists()  # refused before any data, run directory or training
    with pytest.raises(BenchError, match="official"):
        resolve_search("imagenet", model, preset="ean", **_kwargs(flags))


def _kwargs(flags: list[str]) -> dict:
    if flags[0] == "--sharing":
        return {"sharing": flags[1]}
    key, value = flags[1].split("=")
    return {"sam_args": {key: int(value)}}


# --------------------------------------------------------------------------- held-out split


def test_protocol_heldout_is_exact_per_class() -> None:
    """100 of every class that keeps a training image, whatever its size (the official rule)."""
    sizes = [120, 2000, 732, 101, 50]
    targets = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(0).shuffle(targets)
    rule = HeldoutRule(100, per_class=True)
    held = heldout_indices(targets, rule, seed=0, clamp=True)
    # Old rule (count//10 cap): [12, 100, 73, 10, 5]. A class of <= 100 images (a subset
    # tree, never real ImageNet: 732+) keeps training data by holding out 10%, at least one.
    assert np.bincount(targets[held]).tolist() == [100, 100, 100, 100, 5]
    assert np.array_equal(held, heldout_indices(targets, rule, seed=0, clamp=True))
    assert not np.array_equal(held, heldout_indices(targets, rule, seed=1, clamp=True))
    # An explicit request is honoured exactly or refused, naming the class.
    names = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475"]
    with pytest.raises(BenchError, match="class 'n01494475' with no training data") as excinfo:
        heldout_indices(targets, rule, seed=0, classes=names)
    assert "\n" not in str(excinfo.value) and "it has 50 images" in str(excinfo.value)


def test_imagenet_tree_holds_out_the_exact_protocol_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real class-folder tree with 12 and 3 training JPEGs and a 4/class protocol."""
    root = write_imagefolder(tmp_path / "imagenet", classes=2, train_per_class=12, val_per_class=1)
    small = sorted((root / "train").iterdir())[1]
    for f in sorted(small.iterdir())[3:]:
        f.unlink()
    monkeypatch.setattr(DATASETS.get("imagenet"), "heldout", HeldoutRule(4, per_class=True))
    a = load_splits("imagenet", root, image_size=32)
    assert np.bincount(a.heldout.targets).tolist() == [4, 1]  # old rule: [1, 1]
    assert (len(a.train), len(a.heldout)) == (10, 5)
    assert a.info["heldout_rule"] == "4/class" and a.info["heldout_clamped"]
    b = load_splits("imagenet", root, image_size=32)
    assert a.info["heldout_sha256"] == b.info["heldout_sha256"]
    assert np.array_equal(a.heldout.indices, b.heldout.indices)
    with pytest.raises(BenchError, match=f"class '{small.name}'"):
        load_splits("imagenet", root, heldout="4/class", image_size=32)
    # Without the small class nothing is clamped: exactly 4 held out.
    shutil.rmtree(small)
    shutil.rmtree(root / "val" / small.name)
    c = load_splits("imagenet", root, image_size=32)
    assert np.bincount(c.heldout.targets).tolist() == [4] and not c.info["heldout_clamped"]
