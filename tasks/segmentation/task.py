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

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, get_origin

import torch
from torch import nn

from bench.cost import measure_cost
from bench.engine.distributed import barrier, init_distributed, is_main_process
from bench.engine.hparams import field_types
from bench.engine.rundir import prepare_run
from bench.errors import BenchError
from bench.io import atomic_write_json, read_json
from bench.results import make_record, write_record
from bench.transfer import TASKS, TransferRun, TransferTask
from tasks.segmentation.data import TRAIN_CLASSES, cityscapes_missing, find_root
from tasks.segmentation.sample import sample_size

TASK = "segmentation"
DATASET = "cityscapes"
DEFAULT_DATA_ROOT = Path("data/cityscapes")  # mmseg's default layout, relative to cwd
RUN_KIND = "seg"
# Options that steer the run but not its result (kept out of the run hash).
# Not part of the run hash: they change what is printed or measured, not what is trained.
RUNTIME_OPTIONS = ("measure_latency", "log_level")
# On the bundled sample, a default budget that shows the whole flow in seconds.
SAMPLE_ITERS = 20
# MMSegmentation's published single-scale Cityscapes val mIoU of R-50-D8 at 512x1024
# (/work/shared/reference/paper.md): decoder -> {schedule: mIoU}. A sanity anchor only.
MMSEG_R50_D8_MIOU = {
    "fcn": {"40k": 72.25, "80k": 73.61},
    "pspnet": {"40k": 77.85, "80k": 78.55},
    "deeplabv3": {"40k": 79.09, "80k": 79.32},
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _from_text(name: str, tp: Any, value: Any) -> Any:
    """Command-line forms (`--opt crop=512x1024`, `--opt aux_head=false`) of an option."""
    if get_origin(tp) is tuple:
        if isinstance(value, int) and not isinstance(value, bool):
            return (value, value)  # a square crop, e.g. crop=769
        if isinstance(value, str):
            try:
                return tuple(int(p) for p in value.replace("x", ",").split(",") if p.strip())
            except ValueError:
                raise BenchError(f"option {name}={value!r}: expected H,W or HxW") from None
    if tp is bool and isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).lower()
        if text in _TRUE + _FALSE:
            return text in _TRUE
        raise BenchError(f"option {name}={value!r}: expected true or false")
    return value


def hparams_for(run: TransferRun, data_root: Path | None = None) -> Any:
    """The run's SegHParams: options laid over the defaults, then --iters and the seed.

    On the bundled sample (tasks.segmentation.sample) crop and image size default to the
    sample's image size, loaders to no workers and iterations to SAMPLE_ITERS. Unknown
    option keys are errors (they would otherwise be silently ignored).
    """
    from tasks.segmentation.configs import SegHParams

    types = field_types(SegHParams)
    options = {
        k: _from_text(k, types[k], v) if k in types else v
        for k, v in run.options.items()
        if k not in RUNTIME_OPTIONS
    }
    size = None if data_root is None else sample_size(data_root)
    if size is not None:
        options = {"crop": size, "image_size": size, "num_workers": 0, **options}
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


@TASKS.register(TASK)
class SegmentationTask(TransferTask):
    """Semantic segmentation on Cityscapes with an MMSegmentation decoder (mIoU, %)."""

    name: ClassVar[str] = TASK
    datasets: ClassVar[tuple[str, ...]] = (DATASET,)
    metric: ClassVar[str] = "mIoU"
    higher_is_better: ClassVar[bool] = True
    budget_unit: ClassVar[str] = "iters"

    def __init__(self, hooks: Sequence[Any] = ()) -> None:
        # Extra mmengine hooks for every Runner this task starts (tests, profiling).
        self.hooks = tuple(hooks)

    def missing(self, dataset: str, data_root: Path | None) -> str | None:
        if dataset != DATASET:
            return f"segmentation: unknown dataset {dataset!r} (known: {DATASET})"
        return cityscapes_missing(DEFAULT_DATA_ROOT if data_root is None else Path(data_root))

    def run(self, run: TransferRun) -> dict[str, Any]:
        from tasks.segmentation.configs import segmentation_config
        from tasks.segmentation.runner import has_checkpoint, run_runner

        if run.epochs is not None:
            raise BenchError("segmentation trains by iterations: use --iters, not --epochs")
        data_root = DEFAULT_DATA_ROOT if run.data_root is None else Path(run.data_root)
        problem = self.missing(run.dataset, data_root)
        if problem:
            raise BenchError(problem)
        data_root = find_root(data_root)
        hp = hparams_for(run, data_root)
        init_from = None
        if run.init_from is not None:
            init_from = Path(run.init_from).resolve()
            if not init_from.is_file():
                raise BenchError(f"--init-from {run.init_from}: no such file")
        info = init_distributed()
        identity = {
            "task": TASK,
            "dataset": run.dataset,
            "ticket": run.ticket.name,
            "ticket_checksum": run.ticket.checksum,
            "init_from": None if init_from is None else _sha256(init_from),
        }
        plan = prepare_run(run.out_root, RUN_KIND, identity, hp, mode=run.mode)
        if plan.action == "skip":
            record = read_json(plan.result_path)["record"]
            if is_main_process():
                write_record(run.out_root, record)
            return record

        cfg = segmentation_config(
            run.ticket,
            hp,
            data_root=data_root.resolve(),
            work_dir=plan.path,
            init_from=init_from,
            device=run.device,
            distributed=info.enabled,
        )
        cfg.log_level = str(run.options.get("log_level", cfg.log_level))
        runner, metrics = run_runner(
            cfg, device=run.device, resume=has_checkpoint(plan.path), hooks=self.hooks
        )
        segmentor = runner.model.module if hasattr(runner.model, "module") else runner.model
        crop = tuple(hp.crop)
        name = Path(runner.cfg.filename).stem
        record = None
        if is_main_process():
            measure_latency = bool(
                run.options.get("measure_latency", torch.device(run.device).type == "cuda")
            )
            cost = measure_cost(
                _Dense(segmentor),
                (1, 3, *crop),
                device=next(segmentor.parameters()).device,
                latency=measure_latency,
            )
            sched = hp.schedule if not hp.iters else f"{hp.iters}it"
            head = f"{hp.decoder}_b{hp.batch_size}-{sched}-{crop[0]}x{crop[1]}"
            per_iou = {c: _record_value(metrics.get(f"IoU.{c}")) for c in TRAIN_CLASSES}
            per_acc = {c: _record_value(metrics.get(f"Acc.{c}")) for c in TRAIN_CLASSES}
            # The protocol names the benchmark cell: the same for a ticket, its controls and
            # every seed (the leaderboard matches it), so no ticket name, seed or path here.
            protocol: dict[str, Any] = {
                "decoder": hp.decoder,
                "hparams": {k: v for k, v in hp.to_dict().items() if k != "seed"},
                "max_iters": hp.max_iters,
                "world_size": info.world_size,
                "global_batch": hp.batch_size * info.world_size,
                "init_from_checksum": identity["init_from"],
                "runner": "mmengine",
            }
            full_recipe = not hp.iters and tuple(hp.crop) == (512, 1024)
            if run.ticket.backbone == "resnet50" and hp.decoder in MMSEG_R50_D8_MIOU:
                if full_recipe:
                    protocol["mmseg_r50_d8_miou"] = MMSEG_R50_D8_MIOU[hp.decoder][hp.schedule]
            record = make_record(
                ticket=run.ticket,
                task=TASK,
                dataset=run.dataset,
                eval_split="val",
                select_split=None,  # the last iteration's model, as mmseg reports
                head=head,
                metric=self.metric,
                value=_record_value(metrics.get("mIoU")),
                higher_is_better=self.higher_is_better,
                seed=run.seed,
                run_dir=plan.path,
                extras={
                    "aAcc": _record_value(metrics.get("aAcc")),
                    "mAcc": _record_value(metrics.get("mAcc")),
                    "per_class_iou": per_iou,
                    "per_class_acc": per_acc,
                    "iters": runner.iter,
                    "config": name,
                    "init_from": None if init_from is None else str(init_from),
                },
                cost=cost,
                protocol=protocol,
            )
            if record["result"]["value"] is None:
                raise BenchError(f"{plan.path}: validation gave no mIoU (empty val split?)")
            atomic_write_json(plan.result_path, {"record": record, "metrics": metrics})
            write_record(run.out_root, record)
        barrier()
        if record is None:  # other ranks: rank 0 wrote it
            record = read_json(plan.result_path)["record"]
        return record
