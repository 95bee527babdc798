"""Search hyperparameters and presets: typed, frozen dataclasses that make their own flags.

A search preset bundles three records, each hashed into its own run directory:
  * `supernet`: how the full-SAM supernet is trained (a `TrainHParams`, run by the engine);
  * `sampler`: how a mask is drawn per training iteration and how much data it sees;
  * `search`: the evaluator, the budget, the reward and every strategy's settings.

The dataclass defaults of `SupernetHParams` and `SearchHParams` ARE the `short` preset (the
embedded default at 2-core CPU scale), as `TrainHParams`' are the short training preset.
Where a default reproduces the official EAN code (gbup-group/EAN-efficient-attention-network,
search_imagent/EAN_search.py) the help text says "official"; our extras say "ours" and are
off by default unless noted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

from bench.engine.hparams import AUTO, PAPER_SGD, HParams, TrainHParams, hparam
from bench.engine.hparams import preset_for as train_preset_for
from bench.util.errors import BenchError, check_all
from bench.util.registry import Registry

__all__ = [
    "AUTO",
    "AUTO_PRESET",
    "EAN_SPACE",
    "SEARCH_PRESETS",
    "SearchHParams",
    "SearchPreset",
    "SearchSpace",
    "SupernetHParams",
    "preset_for",
    "resolve_preset",
]


@dataclasses.dataclass(frozen=True)
class SupernetHParams(HParams):
    """How the supernet samples its mask each iteration and which training data it sees."""

    sampling: Literal["bernoulli", "density"] = hparam(
        "bernoulli",
        "per-iteration mask: bernoulli = each bit on with keep_prob (official, 0.5); density = "
        "draw the number of kept slots uniformly from 0..N, then which ones (ours)",
    )
    keep_prob: float = hparam(0.5, "bernoulli sampling: probability that a slot is on")
    train_size: int = hparam(
        3000, "train on a fixed random subset of this many training images (0 = all)"
    )

    def validate(self) -> None:
        if not 0.0 <= self.keep_prob <= 1.0:
            raise BenchError(
                f"bad supernet hparams: keep_prob must be in [0, 1], not {self.keep_prob}"
            )
        if self.train_size < 0:
            raise BenchError("bad supernet hparams: train_size must be >= 0")


@dataclasses.dataclass(frozen=True)
class SearchHParams(HParams):
    """The evaluator, budget, reward and strategy settings of one search."""

    # --- budget and evaluator ---------------------------------------------------------------
    budget: int = hparam(
        60,
        "candidate evaluations (one = one new mask scored on the whole scoring subset; cached "
        "masks are free; a halving rung on a fraction f of the subset costs f)",
        bound=">= 1",
    )
    eval_subset: int = hparam(
        500,
        "score candidates on a fixed random subset of this many held-out images (0 = all)",
        bound=">= 0",
    )
    eval_batch_size: int = hparam(500, "batch size of candidate evaluation", bound=">= 1")
    eval_workers: int = hparam(
        0, "DataLoader workers when the scoring set is streamed", bound=">= 0"
    )
    preload_mb: int = hparam(
        4096,
        "decode the scoring set into memory once if it needs at most this many MiB per rank",
        bound=">= 0",
    )
    bn_recalib_batches: int = hparam(
        0,
        "recalibrate BN statistics on this many fixed train batches per candidate (0 = off)",
        bound=">= 0",
    )
    bn_recalib_batch_size: int = hparam(64, "batch size of BN recalibration", bound=">= 2")
    halving: bool = hparam(
        False, "successive halving: score a batch on a small subset, promote the best 1/eta"
    )
    halving_eta: int = hparam(
        3, "successive halving: keep 1/eta of the candidates per rung", bound=">= 2"
    )
    halving_min_images: int = hparam(
        100, "successive halving: images of the first rung", bound=">= 1"
    )
    # --- reward (all strategies maximise the same one) -------------------------------------
    reward_offset: float = hparam(
        54.0, "reward = top-1 percent + w * fraction off - offset (official 54)"
    )
    sparsity_weight: float = hparam(
        2.0, "reward weight of the fraction of slots off (official 2)", bound=">= 0"
    )
    latency_weight: float = hparam(
        0.0,
        "ours: reward -= weight * (measured SAM time of the mask / time of the SAM-free "
        "network), from a per-slot table measured on the current device",
        bound=">= 0",
    )
    latency_batch: int = hparam(8, "batch size of the per-slot latency measurement", bound=">= 1")
    latency_repeats: int = hparam(
        20, "timed repeats of the per-slot latency measurement", bound=">= 1"
    )
    # --- reinforce --------------------------------------------------------------------------
    steps: int = hparam(20, "reinforce: controller steps (official 300)", bound=">= 1")
    samples_per_step: int = hparam(
        3, "reinforce: schemes sampled per step (official 3)", bound=">= 1"
    )
    policy: Literal["mlp", "lstm"] = hparam(
        "mlp",
        "reinforce: mlp = constant zero input -> Linear(20,50) -> ReLU -> Linear(50,2N) "
        "(official); lstm = autoregressive LSTM over the slots (ours)",
    )
    temperature: float = hparam(5.0, "reinforce: softmax temperature (official 5)", bound="> 0")
    controller_lr: float = hparam(
        5e-2, "reinforce: Adam learning rate, constant (official 5e-2)", bound="> 0"
    )
    baseline_decay: float = hparam(
        0.95, "reinforce: decay of the moving-average reward baseline (official)", bound="in [0, 1)"
    )
    lstm_hidden: int = hparam(64, "reinforce lstm policy: hidden size", bound=">= 1")
    rnd: bool = hparam(
        True, "reinforce: random-network-distillation bonus, equal for a step's schemes (official)"
    )
    rnd_weight: float = hparam(1.0, "reinforce: scale of the RND bonus (official 1)", bound=">= 0")
    ppo: bool = hparam(True, "reinforce: PPO-style clipped update from a replay buffer (official)")
    ppo_buffer: int = hparam(
        30, "reinforce: replay buffer size in steps (official 30)", bound=">= 1"
    )
    ppo_clip: float = hparam(0.1, "reinforce: PPO ratio clip (official 0.1)", bound="> 0")
    ppo_weight: float = hparam(0.1, "reinforce: PPO loss weight (official 0.1)", bound=">= 0")
    ppo_start: int = hparam(
        10, "reinforce: first step (0-based) with a PPO update (official 10)", bound=">= 0"
    )
    entropy_weight: float = hparam(
        0.0, "reinforce, ours: entropy bonus weight in the loss", bound=">= 0"
    )
    density_target: float = hparam(
        0.5, "reinforce, ours: target density of the density prior", bound="in [0, 1]"
    )
    density_weight: float = hparam(
        0.0, "reinforce, ours: weight of (expected density - target)^2 in the loss", bound=">= 0"
    )
    # --- random / evolution -----------------------------------------------------------------
    random_batch: int = hparam(
        1,
        "random/evolution: masks proposed per round (with --halving: the halving batch)",
        bound=">= 1",
    )
    population: int = hparam(10, "evolution: population size (regularized evolution)", bound=">= 2")
    tournament: int = hparam(3, "evolution: tournament sample size")

    def validate(self) -> None:
        checks = [
            *self.bound_checks(),
            (1 <= self.tournament <= self.population, "tournament must be in [1, population]"),
        ]
        check_all(checks, "search hparams")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The SAM side of a preset's search space: what it fixes, what the flags may still set.

    sharing: the SAM sharing of every search under the preset (None: `--sharing` decides,
    default "block"); sam_args: per SAM, the module options the preset fixes (a flag may repeat
    a value, not change it; options not listed stay free); origin: per SAM, where the fixed
    values come from (named when a flag is refused).
    """

    sharing: Literal["block", "stage"] | None = None
    sam_args: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    origin: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def resolve(
        self, preset: str, sam: str, sharing: str | None, sam_args: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        """(sharing, sam_args) of a search of SAM `sam` given the flags (None: not given).

        A flag that contradicts the space is a one-line BenchError naming the fixed value.
        """
        given = dict(sam_args or {})
        if self.sharing is not None and sharing not in (None, self.sharing):
            raise BenchError(
                f"--preset {preset}: the official search space has one SAM per "
                f"{self.sharing} (--sharing {self.sharing}); drop --sharing {sharing} or use "
                "--preset short"
            )
        fixed = dict(self.sam_args.get(sam, {}))
        for key, value in given.items():
            if key in fixed and value != fixed[key]:
                where = self.origin.get(sam, "the official code")
                raise BenchError(
                    f"--preset {preset}: {sam}'s official {key} is {fixed[key]!r} ({where}); "
                    f"drop --sam-arg {key}={value} or use --preset short"
                )
        resolved = sharing if sharing is not None else (self.sharing or "block")
        return resolved, {**given, **fixed}


# The official EAN search space (gbup-group/EAN-efficient-attention-network): ONE SAM shared
# by the connected blocks of each stage, with the official modules' options. Our factories'
# option names: bench/models/sams.py.
EAN_SPACE = SearchSpace(
    sharing="stage",
    sam_args={
        # small_cell: Linear(C, C//20) -> ReLU -> Linear(C//20, 4C) for both maps.
        "dia": {"reduction": 20},
        "sge": {"groups": 64},
        # Shared SE: 1x1 convs with bias, hidden C//16 exactly (timm's SEModule would round
        # the hidden width to a multiple of 8 without rd_divisor=1).
        "se": {"rd_ratio": 1 / 16, "rd_divisor": 1},
    },
    origin={
        "dia": "one cell per stage, Linear(C, C//20), "
        "search_imagent/imagenet_network/forward_config_dia_fbresnet.py",
        "sge": "one SGE per stage, 64 groups, forward_config_share_sge_fbresnet.py",
        "se": "one SE per stage, 1x1 convs C -> C//16 -> C with bias, "
        "train_imagenet/imagenet_network/forward_config_share_se_fbresnet.py",
    },
)


@dataclasses.dataclass(frozen=True)
class SearchPreset:
    """Everything a named preset fixes for one dataset.

    space: the SAM sharing and options it fixes; seed: the search seed when none is given.
    """

    name: str
    supernet: TrainHParams
    sampler: SupernetHParams
    search: SearchHParams
    space: SearchSpace = SearchSpace()
    seed: int = 0


# A preset is a function of the dataset (ImageNet and CIFAR train their supernets differently).
SEARCH_PRESETS: Registry[Callable[[str], SearchPreset]] = Registry("search preset")
# --preset auto: the paper's protocol where the dataset has one (ImageNet: the official
# search; CIFAR: the same recipe at CIFAR scale, see `ean`), the CPU-scale embedded default
# on Fashion-MNIST (and any other dataset).
AUTO_PRESET = {"imagenet": "ean", "cifar10": "ean", "cifar100": "ean", "fashion-mnist": "short"}


def preset_for(name: str, dataset: str) -> str:
    """The search preset `--preset NAME` means for `dataset` (auto resolved; others as given)."""
    return train_preset_for(name, dataset, AUTO_PRESET)


@SEARCH_PRESETS.register("short")
def short(dataset: str) -> SearchPreset:
    """The embedded default: supernet and search in a few minutes on a 2-core CPU.

    Supernet: 2 epochs on 3,000 training images (94 SGD steps at batch 64, lr 0.05,
    cosine); search: 20 controller steps x 3 schemes, at most 60 candidate evaluations on
    500 held-out images. Reward, controller, RND and PPO as official.
    """
    supernet = TrainHParams(epochs=2, batch_size=64, lr=0.05, warmup_epochs=0, schedule="cosine")
    return SearchPreset("short", supernet, SupernetHParams(), SearchHParams())


@SEARCH_PRESETS.register("ean")
def ean(dataset: str) -> SearchPreset:
    """The paper's protocol as the official code runs it (paper.md, "Method").

    ImageNet: supernet SGD lr 0.1, momentum 0.9, wd 1e-4, batch 256, lr x0.1 every 40
    epochs, and the search uses the 40-epoch checkpoint: so 40 epochs at constant lr 0.1.
    Other datasets (not published): the same recipe at CIFAR scale, batch 128 and the first
    learning-rate phase of the CIFAR ResNet-164 protocol (81 epochs at lr 0.1), by analogy.
    Search: every held-out image (ImageNet: 100 per class), 300 steps x 3 schemes, evaluation
    batch 1000 (the official --batch-size), reward, controller, RND and PPO as official.
    Seed 666 (the official run_code_search_*.py) unless --seeds is given.
    Search space (`EAN_SPACE`): one SAM shared per stage (--sharing stage); the official
    modules' options: DIA reduction 20, SGE 64 groups, SE reduction 16 with the hidden width
    exactly C//16 (rd_ratio 1/16, rd_divisor 1). `--sharing block` or a --sam-arg that
    contradicts these is refused. Other SAMs have no official module: they are searched
    with the same stage sharing and their own defaults (our choice; --sam-arg is free for them).
    """
    if dataset == "imagenet":
        supernet = TrainHParams(epochs=40, batch_size=256, num_workers=8, **PAPER_SGD)
    else:
        supernet = TrainHParams(epochs=81, batch_size=128, **PAPER_SGD)
    sampler = SupernetHParams(train_size=0)
    search = SearchHParams(
        budget=900,
        eval_subset=0,
        eval_batch_size=1000,
        eval_workers=8 if dataset == "imagenet" else 0,
        steps=300,
    )
    return SearchPreset("ean", supernet, sampler, search, space=EAN_SPACE, seed=666)


def resolve_preset(
    name: str,
    dataset: str,
    *,
    epochs: int | None = None,
    iters: int | None = None,
    budget: int | None = None,
    search: dict | None = None,
    supernet: dict | None = None,
    sampler: dict | None = None,
) -> SearchPreset:
    """Preset `name` (auto: `preset_for`) for `dataset` with overrides laid over it (validated).

    epochs: supernet epochs (also `supernet["epochs"]`; --epochs wins), which scale the
    supernet's step schedule; iters: reinforce controller steps; budget: evaluations. The
    dicts override fields of the three records by name (e.g. from command-line flags).
    """
    preset = SEARCH_PRESETS.get(preset_for(name, dataset))(dataset)
    overrides = dict(supernet or {})
    # A new epoch budget scales the preset's schedule first (TrainHParams.with_epochs); then
    # explicit fields (e.g. milestones) win, as for `bench train`.
    given = overrides.pop("epochs", None)
    epochs = given if epochs is None else epochs
    sup = TrainHParams.from_dict(overrides, base=preset.supernet.with_epochs(epochs))
    srch = SearchHParams.from_dict(search or {}, base=preset.search)
    if iters is not None:
        srch = srch.replace(steps=iters)
    if budget is not None:
        srch = srch.replace(budget=budget)
    samp = SupernetHParams.from_dict(sampler or {}, base=preset.sampler)
    return dataclasses.replace(preset, supernet=sup, sampler=samp, search=srch)
