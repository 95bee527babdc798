"""Crowd-counting options and training protocols.

`CrowdOptions` fixes the data side of a cell (density kernel, border and outside-point
policies, validation carve-out, crops, cost input); a `Protocol` pairs engine hparams with
the options it starts from. A TransferRun's options dict picks a protocol ("protocol") and
lays "hparams" (TrainHParams fields) and CrowdOptions fields over it. `OPTIONS` declares
those keys for `bench transfer --opt KEY=VALUE` (TrainHParams fields by their own name).
Light on purpose (no torch, scipy or data): the CLI reads it to check options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bench.engine.hparams import HParams, TrainHParams, check_batch_split, hparam
from bench.runs.task_options import OptionGroup, TaskOptions, WorkQuery
from bench.util.errors import BenchError, check_all
from bench.util.paths import default_data_root
from bench.util.registry import Registry
from tasks.crowd_counting import LAYOUTS

if TYPE_CHECKING:
    from tasks.crowd_counting.density import DensitySpec

# Training images of the official release (Zhang et al. 2016), before the validation carve.
OFFICIAL_TRAIN = {"shanghaitech-a": 300, "shanghaitech-b": 400}
# paper.md: Part A geometry-adaptive kernels, Part B a fixed sigma of 15.
PAPER_KERNEL = {"shanghaitech-a": "adaptive", "shanghaitech-b": "fixed"}
ITERS_NOTE = "--iters N runs ceil(N / steps_per_epoch) epochs: at least N optimizer steps"


@dataclass(frozen=True)
class CrowdOptions(HParams):
    """Data, density-map and augmentation settings of a crowd-counting cell."""

    kernel: Literal["auto", "adaptive", "fixed"] = hparam(
        "auto", "density kernel; auto: Part A adaptive, Part B fixed (the paper's)"
    )
    sigma: float = hparam(15.0, "fixed kernel: Gaussian sigma in pixels (Part B's 15)", bound="> 0")
    beta: float = hparam(
        0.3, "adaptive kernel: sigma = beta x mean distance to the neighbours", bound="> 0"
    )
    neighbours: int = hparam(3, "adaptive kernel: nearest heads averaged over", bound=">= 1")
    border: Literal["renormalize", "cut", "csrnet"] = hparam(
        "renormalize",
        "kernels cut by the image border: renormalize (each head adds exactly 1), cut (the "
        "mass outside the image is lost, one kernel per head), or csrnet (CSRNet's "
        "make_dataset exactly: heads on one pixel merge; Part A cut kernels in float32, "
        "Part B one reflect-mode filter; with outside=drop, as the notebook skips points)",
    )
    outside: Literal["clip", "drop"] = hparam(
        "clip", "annotated points outside the image: clip to the border pixel, or drop"
    )
    val_fraction: float = hparam(
        0.1, "fraction of train carved out as the validation split", bound="in (0, 1)"
    )
    split_seed: int = hparam(0, "seed of the validation carve-out (fixed across runs)")
    crop_size: int = hparam(
        256,
        "training crop side in pixels, a multiple of the output stride; 0: half the "
        "image's height and width (CSRNet's quarter-size patches; needs batch size 1)",
        bound=">= 0",
    )
    crops_per_image: int = hparam(1, "random crops of each training image per epoch", bound=">= 1")
    flip: bool = hparam(True, "random horizontal flips")
    cache_dir: str = hparam(
        "", "density-map cache folder ('' = beside the annotations, or the user cache)"
    )
    cost_size: tuple[int, ...] = hparam((768, 1024), "H,W of the input the costs are measured at")
    latency_repeats: int = hparam(
        20, "0: no latency; else timed side by side to a tolerance", bound=">= 0"
    )

    def validate(self) -> None:
        checks = [
            *self.bound_checks(),
            (len(self.cost_size) == 2 and min(self.cost_size) > 0, "cost_size must be H,W > 0"),
        ]
        check_all(checks, "crowd counting options")

    def density_spec(self, dataset: str) -> DensitySpec:
        from tasks.crowd_counting.density import DensitySpec

        kernel = PAPER_KERNEL[dataset] if self.kernel == "auto" else self.kernel
        return DensitySpec(
            kernel=kernel,
            sigma=self.sigma,
            beta=self.beta,
            neighbours=self.neighbours,
            border=self.border,
            outside=self.outside,
        )


@dataclass(frozen=True)
class Protocol:
    """A training recipe: engine hparams and the task options it starts from."""

    hparams: TrainHParams
    options: CrowdOptions
    note: str


PROTOCOLS: Registry[Protocol] = Registry("crowd counting protocol")


def _recipe(**hparams: Any) -> TrainHParams:
    """Engine hparams of a crowd recipe: test images are whole and of varying size, so they
    are evaluated one at a time (eval batch 1); neither recipe warms up."""
    return TrainHParams(eval_batch_size=1, warmup_epochs=0, **hparams)


# CSRNet (Li et al. 2018, official code): SGD lr 1e-7 (constant: a step schedule without
# milestones), momentum 0.95, weight decay 5e-4, batch 1, 400 epochs, each image visited 4
# times per epoch; the paper's quarter-size patches (half height x half width) at random
# positions, random flips. lr 1e-7 suits an ImageNet-initialised front-end: use --init-from.
PROTOCOLS.register("csrnet")(
    Protocol(
        _recipe(
            epochs=400, batch_size=1, lr=1e-7, momentum=0.95, weight_decay=5e-4, schedule="step"
        ),
        CrowdOptions(crop_size=0, crops_per_image=4),
        "CSRNet's optimizer and schedule (official code), quarter-size random patches",
    )
)
# The embedded default: minutes on a 2-core CPU, from scratch (not from the paper).
PROTOCOLS.register("short")(
    Protocol(
        _recipe(
            epochs=8, batch_size=4, lr=1e-3, momentum=0.9, weight_decay=1e-4, schedule="cosine"
        ),
        CrowdOptions(
            crop_size=64,
            crops_per_image=2,
            val_fraction=0.25,
            cost_size=(128, 128),
            latency_repeats=5,
        ),
        "CPU-scale recipe for the bundled sample data (not from the paper)",
    )
)
AUTO_PROTOCOL = "auto"


@dataclass(frozen=True)
class ProtocolChoice(HParams):
    """The `protocol` option: which training recipe a cell starts from."""

    protocol: str = hparam(
        AUTO_PROTOCOL,
        "training protocol: auto (short on the bundled sample data, csrnet otherwise), "
        "csrnet (CSRNet's recipe) or short (CPU scale); options below lay over it",
        choices=lambda: (AUTO_PROTOCOL, *PROTOCOLS),
    )


def work(q: WorkQuery) -> int:
    """Images one arm trains on: epochs x (train minus validation) x crops per image.

    The train images are counted in the part's folder where it exists, else the bundled
    sample's or the official release's count; the protocol resolves as the run's does."""
    from tasks.crowd_counting.data import (
        DATASETS,
        count_images,
        find_part,
        part_candidates,
        validation_count,
    )
    from tasks.crowd_counting.sample import TRAIN_TILES, is_sample

    try:
        part = find_part(q.dataset, q.data_root)
    except BenchError:  # not there (yet): where the layout puts it first
        root = Path(q.data_root) if q.data_root is not None else default_data_root()
        part = part_candidates(root, DATASETS[q.dataset])[0]
    opts = dict(q.options)
    sample = q.sample or is_sample(part)
    if sample and opts.get("protocol", AUTO_PROTOCOL) == AUTO_PROTOCOL:
        opts["protocol"] = "short"  # what auto resolves to once the sample is written
    _, hp, crowd = resolve(opts, part)
    n = count_images(part / "train_data" / "images")
    n = n or (TRAIN_TILES if sample else OFFICIAL_TRAIN[q.dataset])
    n_train = (n - validation_count(n, crowd.val_fraction)) * crowd.crops_per_image
    hp = apply_length(hp, q.epochs, q.iters, steps_per_epoch(n_train, hp.batch_size, q.processes))
    return hp.epochs * n_train


OPTIONS = TaskOptions(
    "crowd_counting",
    (
        OptionGroup(ProtocolChoice),
        OptionGroup(
            CrowdOptions,
            bases={n: PROTOCOLS.get(n).options for n in PROTOCOLS},
            title="data, density maps and costs",
        ),
        # Engine hparams by name (lr=1e-6), into options["hparams"]; the budget and seed
        # come from --epochs/--iters and --seeds.
        OptionGroup(
            TrainHParams,
            into="hparams",
            skip=("epochs", "seed"),
            bases={n: PROTOCOLS.get(n).hparams for n in PROTOCOLS},
            title="training (over the protocol's; budget: --epochs or --iters, seed: --seeds)",
        ),
    ),
    note="a default per protocol where they differ",
    adapter="tasks.crowd_counting.task",
    datasets=tuple(LAYOUTS),
    layouts=LAYOUTS,
    recipes=lambda pattern: [
        (n, f"{PROTOCOLS.get(n).note}: {PROTOCOLS.get(n).hparams.summary()}")
        for n in PROTOCOLS.list(pattern)
    ],
    recipes_title="crowd counting protocols (bench transfer --opt protocol=NAME; auto: short "
    "on the bundled sample, csrnet otherwise)",
    work=work,
)


def resolve_protocol(name: str, part_dir: Path) -> str:
    """auto: short for the bundled sample data (tasks.crowd_counting.sample), else csrnet."""
    from tasks.crowd_counting.sample import is_sample

    if name != AUTO_PROTOCOL:
        PROTOCOLS.get(name)
        return name
    return "short" if is_sample(part_dir) else "csrnet"


def resolve(
    options: dict[str, Any] | None, part_dir: Path
) -> tuple[str, TrainHParams, CrowdOptions]:
    """(protocol name, engine hparams, task options) from a TransferRun's options dict.

    Keys: "protocol" (auto, short, csrnet), "hparams" (TrainHParams fields over the
    protocol's) and any CrowdOptions field (over the protocol's).
    """
    opts = dict(options or {})
    name = resolve_protocol(str(opts.pop("protocol", AUTO_PROTOCOL)), part_dir)
    proto = PROTOCOLS.get(name)
    hp_over = opts.pop("hparams", None) or {}
    if not isinstance(hp_over, dict):
        raise BenchError("crowd counting option 'hparams': expected a mapping of TrainHParams")
    hp = TrainHParams.from_dict(hp_over, base=proto.hparams)
    crowd = CrowdOptions.from_dict(opts, base=proto.options)
    if crowd.crop_size == 0 and hp.batch_size != 1:
        raise BenchError("crop_size 0 (half-size patches of varying size) needs batch_size 1")
    return name, hp, crowd


def steps_per_epoch(n_samples: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps per epoch of the engine's loader (bench.engine.loop.train)."""
    check_batch_split(batch_size, world_size)
    per_rank = math.ceil(n_samples / world_size)
    batch = batch_size // world_size
    steps = math.ceil(per_rank / batch)
    if per_rank % batch == 1 and per_rank > 1:
        steps -= 1  # the engine drops a one-sample last batch
    return max(steps, 1)


def apply_length(hp: TrainHParams, epochs: int | None, iters: int | None, spe: int) -> TrainHParams:
    """--epochs, or --iters mapped onto whole epochs (ITERS_NOTE); not both."""
    if epochs is not None and iters is not None:
        raise BenchError("give --epochs or --iters, not both")
    if iters is not None:
        if iters < 1:
            raise BenchError(f"--iters {iters}: expected >= 1")
        epochs = math.ceil(iters / spe)
    if epochs is None:
        return hp
    warm = min(hp.warmup_epochs, epochs)
    keep = tuple(m for m in hp.milestones if m < epochs)
    return replace(hp, epochs=epochs, warmup_epochs=warm, milestones=keep)
