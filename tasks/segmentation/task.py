"""The "segmentation" transfer task: a ticket backbone inside an mmseg decoder on Cityscapes.

One cell = (ticket, decoder, hparams, seed): a run directory named by the hash of those
(bench.engine.prepare_run) that is also the Runner's work_dir, so rerunning a cell skips
it when finished and resumes it from the Runner's last checkpoint when not. The final
validation of mmseg's IoUMetric becomes the suite's result record (mIoU primary; aAcc,
mAcc and per-class IoU/accuracy as extras; parameters and FLOPs of the whole segmentor).

Under torchrun every rank calls `run`; the process group is joined first (gloo on CPU,
nccl on CUDA) and mmengine's "pytorch" launcher finds it already initialised.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, get_origin

import torch
from torch import nn

from bench.engine.device import select_device
from bench.engine.distributed import init_distributed
from bench.engine.hparams import field_types, from_text
from bench.engine.rundir import RunPlan
from bench.runs.cell import Cell, CostSpec, Fitted, Scored, run_transfer
from bench.runs.pretrained import SCRATCH, Init, check_ticket
from bench.runs.transfer import TASKS, TransferRun, TransferTask
from bench.ticket.schema import Ticket
from bench.util.errors import BenchError
from tasks.segmentation.data import TRAIN_CLASSES, cityscapes_missing, find_root
from tasks.segmentation.options import DEFAULT_DATA_ROOT, OPTIONS, SAMPLE_ITERS, SegRuntime
from tasks.segmentation.sample import sample_size

TASK = "segmentation"
DATASET = "cityscapes"
RUN_KIND = "seg"
# Options that steer the run but not its result (kept out of the run hash).
# Not part of the run hash: they change what is printed or measured, not what is trained.
RUNTIME_OPTIONS = tuple(f.name for f in dataclasses.fields(SegRuntime))
# MMSegmentation's published single-scale Cityscapes val mIoU of R-50-D8 at 512x1024
# (/work/shared/reference/paper.md): decoder -> {schedule: mIoU}. A sanity anchor only.
MMSEG_R50_D8_MIOU = {
    "fcn": {"40k": 72.25, "80k": 73.61},
    "pspnet": {"40k": 77.85, "80k": 78.55},
    "deeplabv3": {"40k": 79.09, "80k": 79.32},
}


def _from_text(name: str, tp: Any, value: Any, default: Any) -> Any:
    """An option given from code as text or a bare number (`crop=769`, `aux_head=1`) typed
    the one way every task's `--opt` is (bench.engine.hparams.from_text)."""
    textual = isinstance(value, str) or (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (tp is bool or get_origin(tp) is tuple)
    )
    if not textual:
        return value
    try:
        return from_text(tp, str(value), default)
    except ValueError as e:
        raise BenchError(f"option {name}={value!r}: {e}") from None


def hparams_for(run: TransferRun, data_root: Path | None = None) -> Any:
    """The run's SegHParams: options laid over the defaults, then --iters and the seed.

    On the bundled sample (tasks.segmentation.sample) crop and image size default to the
    sample's image size, loaders to no workers and iterations to SAMPLE_ITERS. Unknown
    option keys are errors (they would otherwise be silently ignored).
    """
    from tasks.segmentation.configs import SegHParams

    types, defaults = field_types(SegHParams), SegHParams()
    options = {
        k: _from_text(k, types[k], v, getattr(defaults, k)) if k in types else v
        for k, v in run.options.items()
        if k not in RUNTIME_OPTIONS
    }
    size = None if data_root is None else sample_size(data_root)
    if size is not None:
        options = {"crop": size, "image_size": size, "num_workers": 0, **options}
    if run.init.kind != "scratch":  # a classification network has the plain 7x7 stem
        options = {"deep_stem": False, **options}
    if "seed" in options or "iters" in options:
        raise BenchError("segmentation options: set the seed with --seeds and iters with --iters")
    changes: dict[str, Any] = {"seed": run.seed}
    iters = run.iters if run.iters is not None or size is None else SAMPLE_ITERS
    if iters is not None:
        changes["iters"] = iters
    return SegHParams.from_dict({**options, **changes})


class _Dense(nn.Module):
    """The segmentor as image -> logits (for FLOPs and latency), exposing its SAMs."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentor._forward(x)

    def sam_modules(self) -> list[nn.Module]:
        return list(getattr(self.segmentor.backbone, "sam_modules", list)())


def _record_value(v: float | None) -> float | None:
    # mmseg rounds to 2 decimals in float32; round again so 77.85 is not 77.8499984741211.
    return None if v is None or not math.isfinite(v) else round(float(v), 2)


class SegCell(Cell):
    """mIoU on Cityscapes val of the last iteration's model, as mmseg reports."""

    task = TASK
    run_kind = RUN_KIND
    metric = "mIoU"
    higher_is_better = True
    eval_split = "val"
    select_split = None

    def __init__(self, run: TransferRun, hooks: Sequence[Any] = ()) -> None:
        if run.epochs is not None:
            raise BenchError("segmentation trains by iterations: use --iters, not --epochs")
        data_root = DEFAULT_DATA_ROOT if run.data_root is None else Path(run.data_root)
        if problem := cityscapes_missing(data_root):
            raise BenchError(problem)
        self.data_root = find_root(data_root).resolve()
        super().__init__(run.ticket, run.dataset, hparams_for(run, self.data_root))
        self.options, self.hooks = run.options, tuple(hooks)
        self.device = str(select_device(run.device))
        self.dist = init_distributed(self.device)  # before the run dir is planned (all ranks)

    @property
    def head(self) -> str:
        hp = self.hp
        sched = hp.schedule if not hp.iters else f"{hp.iters}it"
        return f"{hp.decoder}_b{hp.batch_size}-{sched}-{hp.crop[0]}x{hp.crop[1]}"

    def identity(self) -> dict[str, Any]:
        return {}

    def _config(self, ticket: Ticket, work_dir: Path, device: str, init: Init = SCRATCH) -> Any:
        from tasks.segmentation.configs import segmentation_config

        return segmentation_config(
            ticket,
            self.hp,
            data_root=self.data_root,
            work_dir=work_dir,
            init_from=init.path,
            device=device,
            distributed=self.dist.enabled,
        )

    def cost_model(self, ticket: Ticket) -> nn.Module:
        from mmseg.registry import MODELS

        cfg = self._config(ticket, self.data_root, "cpu")  # the work dir is not used
        return _Dense(MODELS.build(cfg.model))

    def cost_spec(self) -> CostSpec:
        on_cuda = torch.device(self.device).type == "cuda"
        latency = bool(self.options.get("measure_latency", on_cuda))
        return CostSpec((1, 3, *self.hp.crop), latency=latency)

    def fit(self, plan: RunPlan, init: Init, device: str) -> Fitted:
        from tasks.segmentation.runner import resume_point, run_runner

        if init.path is not None:
            check_ticket(init.path, self.ticket)
        cfg = self._config(self.ticket, plan.path, device, init)
        cfg.log_level = str(self.options.get("log_level", cfg.log_level))
        cfg.model.backbone.with_cp = bool(self.options.get("with_cp", False))
        runner, metrics, wall = run_runner(
            cfg, device=device, resume_from=resume_point(plan.path), hooks=self.hooks
        )
        segmentor = runner.model.module if hasattr(runner.model, "module") else runner.model
        facts = {"metrics": metrics, "iters": runner.iter, "wall_time_s": wall}
        facts["config"] = Path(runner.cfg.filename).stem
        return Fitted(True, segmentor, segmentor.backbone.init_report, facts)

    def score(self, fitted: Fitted, device: str) -> Scored:
        hp, metrics = self.hp, fitted.facts["metrics"]
        value = _record_value(metrics.get("mIoU"))
        if value is None:
            raise BenchError("validation gave no mIoU (empty val split?)")
        extras = {
            "aAcc": _record_value(metrics.get("aAcc")),
            "mAcc": _record_value(metrics.get("mAcc")),
            "per_class_iou": {c: _record_value(metrics.get(f"IoU.{c}")) for c in TRAIN_CLASSES},
            "per_class_acc": {c: _record_value(metrics.get(f"Acc.{c}")) for c in TRAIN_CLASSES},
            "iters": fitted.facts["iters"],
            "config": fitted.facts["config"],
        }
        # The protocol names the benchmark cell: the same for a ticket, its controls and
        # every seed (the leaderboard matches it), so no ticket name, seed or path here.
        protocol: dict[str, Any] = {
            "decoder": hp.decoder,
            "hparams": self.protocol_hparams(),
            "max_iters": hp.max_iters,
            "world_size": self.dist.world_size,
            "global_batch": hp.batch_size * self.dist.world_size,
            "runner": "mmengine",
        }
        full_recipe = not hp.iters and tuple(hp.crop) == (512, 1024)
        r50 = self.ticket.backbone == "resnet50"
        if r50 and hp.decoder in MMSEG_R50_D8_MIOU and full_recipe:
            protocol["mmseg_r50_d8_miou"] = MMSEG_R50_D8_MIOU[hp.decoder][hp.schedule]
        return Scored(value, extras, protocol)


@TASKS.register(TASK)
class SegmentationTask(TransferTask):
    """Semantic segmentation on Cityscapes with an MMSegmentation decoder (mIoU, %)."""

    name: ClassVar[str] = TASK
    datasets: ClassVar[tuple[str, ...]] = OPTIONS.datasets
    cell: ClassVar[type] = SegCell
    budget_unit: ClassVar[str] = "iters"

    def write_sample(self, data_root: Path) -> None:
        from tasks.segmentation.sample import write_cityscapes_sample

        if not (data_root / "cityscapes").exists():
            write_cityscapes_sample(data_root / "cityscapes")

    def __init__(self, hooks: Sequence[Any] = ()) -> None:
        # Extra mmengine hooks for every Runner this task starts (tests, profiling).
        self.hooks = tuple(hooks)

    def missing(self, dataset: str, data_root: Path | None) -> str | None:
        if dataset != DATASET:
            return f"segmentation: unknown dataset {dataset!r} (known: {DATASET})"
        return cityscapes_missing(DEFAULT_DATA_ROOT if data_root is None else Path(data_root))

    def run(self, run: TransferRun) -> dict[str, Any]:
        return run_transfer(SegCell(run, self.hooks), run)
