"""End to end: the "segmentation" task trains mmseg decoders on the fixture through the
mmengine Runner, resumes from its own checkpoints, starts from a classification checkpoint,
and runs under torchrun (gloo, CPU).

Run as a script, this file is the torchrun worker; as a test module, it launches it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from fixtures_seg import random_ticket, tiny_run

from bench.engine.checkpoint import save_checkpoint
from bench.engine.distributed import torchrun_command
from bench.models.slots import build_ticket_model
from bench.runs.records import iter_records
from bench.runs.transfer import TASKS
from bench.util.errors import BenchError
from bench.util.fingerprint import file_sha256
from tasks.segmentation.data import TRAIN_CLASSES
from tasks.segmentation.task import SegmentationTask, hparams_for

ROOT = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    """A job killed mid-run (a plain exception: pytest treats KeyboardInterrupt specially)."""


def _hooks():
    from tasks.segmentation import compat

    compat.ensure()
    from mmengine.hooks import Hook

    class Crash(Hook):
        """Stops training like a killed job: after the iteration-2 checkpoint."""

        priority = "LOWEST"

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            if batch_idx == 2:
                raise Interrupted("simulated interruption")

    class AtStart(Hook):
        """What the model looks like when the training loop starts."""

        def __init__(self) -> None:
            self.iter: int | None = None
            self.weights: dict[str, torch.Tensor] = {}

        def before_train(self, runner) -> None:
            self.iter = runner.iter
            sd = runner.model.backbone.state_dict()
            self.weights = {k: v.detach().clone() for k, v in sd.items()}

    return Crash, AtStart


def _check_record(rec: dict, ticket, decoder: str) -> None:
    assert rec["setting"]["task"] == "segmentation" and rec["setting"]["dataset"] == "cityscapes"
    assert rec["setting"]["head"].startswith(decoder)
    res = rec["result"]
    assert res["metric"] == "mIoU" and res["higher_is_better"] is True
    ex = res["extras"]
    assert 0.0 <= ex["aAcc"] <= 100.0
    assert list(ex["per_class_iou"]) == list(TRAIN_CLASSES)
    present = {k for k, v in ex["per_class_iou"].items() if v is not None}
    assert {"building", "person"} <= present  # the classes the fixture's labels hold
    # mmseg's mIoU / mAcc are the nanmeans of the per-class values: the mean over the classes
    # present (IoU: in labels or predictions; Acc: in labels), not over all 19. Each number is
    # rounded to 2 decimals on its own, so they agree to 0.01.
    ious = [v for v in ex["per_class_iou"].values() if v is not None]
    accs = [v for v in ex["per_class_acc"].values() if v is not None]
    assert all(0.0 <= v <= 100.0 for v in ious + accs)
    assert res["value"] == pytest.approx(sum(ious) / len(ious), abs=0.011)
    assert ex["mAcc"] == pytest.approx(sum(accs) / len(accs), abs=0.011)
    assert {k for k, v in ex["per_class_acc"].items() if v is not None} <= present
    assert rec["identity"]["ticket_checksum"] == ticket.checksum
    cost = rec["cost"]
    assert cost["params_sams"] > 0 and cost["gflops"] > 0
    assert cost["params_total"] == cost["params_backbone"] + cost["params_sams"]
    assert rec["provenance"]["status"] == "finished"
    # The protocol is the leaderboard's cell key: shared by a ticket, its controls and seeds.
    assert ticket.name not in json.dumps(rec["protocol"])
    assert "seed" not in rec["protocol"]["hparams"]


def test_registered() -> None:
    cls = TASKS.get("segmentation")
    assert cls is SegmentationTask
    assert cls.datasets == ("cityscapes",) and cls.metric == "mIoU" and cls.higher_is_better


def test_bad_options_fail_before_any_run(cityscapes_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    task = SegmentationTask()
    for over, msg in (
        ({"decoder": "segformer"}, "decoder 'segformer'"),
        ({"crop": "64xabc"}, r"crop=.64xabc.: expected .*HxW"),
        ({"aux_head": "maybe"}, "expected true or false"),
        ({"heads": 3}, "unknown SegHParams field"),
    ):
        decoder = over.pop("decoder", "fcn")
        run = tiny_run(random_ticket(), decoder, data_root=cityscapes_root, out_root=out, **over)
        with pytest.raises(BenchError, match=msg):
            task.run(run)
    run = tiny_run(random_ticket(), "fcn", data_root=cityscapes_root, out_root=out)
    with pytest.raises(BenchError, match="use --iters"):
        task.run(dataclasses.replace(run, epochs=3))
    assert not out.exists()


def test_sample_sets_its_own_size_defaults(cityscapes_root: Path, tmp_path: Path) -> None:
    run = dataclasses.replace(
        tiny_run(random_ticket(), "fcn", data_root=cityscapes_root, out_root=tmp_path),
        options={"decoder": "fcn"},
    )
    hp = hparams_for(run, cityscapes_root)
    assert (hp.crop, hp.image_size, hp.num_workers) == ((64, 128), (64, 128), 0)
    given = dataclasses.replace(run, options={"crop": "32x64"})
    assert hparams_for(given, cityscapes_root).crop == (32, 64)  # what is given wins
    real = tmp_path / "real"
    real.mkdir()
    assert hparams_for(run, real).crop == (512, 1024)  # not the sample: mmseg's recipe
    assert hparams_for(run).iters == 2 and hparams_for(run).seed == 0


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["fcn", "pspnet", "deeplabv3", "deeplabv3plus", "upernet"])
def test_each_decoder_trains_and_scores(decoder: str, cityscapes_root: Path, tmp_path: Path):
    ticket = random_ticket()
    out = tmp_path / "out"
    rec = SegmentationTask().run(tiny_run(ticket, decoder, data_root=cityscapes_root, out_root=out))
    _check_record(rec, ticket, decoder)
    assert rec["result"]["extras"]["iters"] == 2
    [(path, stored)] = list(iter_records(out))
    assert stored == rec
    run_dir = Path(rec["provenance"]["run_dir"])
    # The Runner's own checkpoint loads with weights_only=True (torch >= 2.6's default).
    ckpt = torch.load(run_dir / "iter_2.pth", weights_only=True)
    assert ckpt["meta"]["iter"] == 2


@pytest.mark.slow
def test_init_from_resume_and_skip(cityscapes_root: Path, tmp_path: Path) -> None:
    Crash, AtStart = _hooks()
    ticket = random_ticket()
    cls_net = build_ticket_model(ticket, num_classes=10)  # a CIFAR classification network
    init = tmp_path / "best.pt"
    save_checkpoint(init, {"model": cls_net.state_dict()})
    out = tmp_path / "out"

    def run():
        return tiny_run(
            ticket, "pspnet", data_root=cityscapes_root, out_root=out, iters=4, init_from=init
        )

    first = AtStart()
    with pytest.raises(Interrupted):
        SegmentationTask(hooks=[first, Crash()]).run(run())
    assert first.iter == 0
    theirs = cls_net.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in first.weights.items())
    [run_dir] = [p for p in out.iterdir() if p.name.startswith("seg_")]
    assert (run_dir / "iter_2.pth").is_file() and not (run_dir / "result.json").exists()
    assert not (out / "records").exists()  # an interrupted run writes no record

    second = AtStart()
    rec = SegmentationTask(hooks=[second]).run(run())
    assert second.iter == 2  # resumed, not restarted
    saved = torch.load(run_dir / "iter_2.pth", weights_only=True)["state_dict"]
    for k, v in second.weights.items():
        assert torch.equal(v, saved[f"backbone.{k}"]), k
    assert rec["result"]["extras"]["iters"] == 4
    init_facts = rec["result"]["extras"]["init"]
    assert init_facts["kind"] == "file" and init_facts["checksum"] == file_sha256(init, 16)
    assert init_facts["keys"]["missing"] == [] and init_facts["keys"]["unexpected"] == [
        "fc.weight",
        "fc.bias",
    ]
    assert rec["protocol"]["init"] == {"kind": "file", "checksum": file_sha256(init, 16)}
    _check_record(rec, ticket, "pspnet")

    third = AtStart()
    again = SegmentationTask(hooks=[third]).run(run())
    assert again == rec and third.iter is None  # finished: skipped, nothing trained

    # mmseg's own inference API takes the dumped config (top-level test_pipeline) and the
    # Runner's checkpoint, loaded with torch's default weights_only=True.
    from mmseg.apis import inference_model, init_model

    [config] = run_dir.glob("pspnet_*.py")
    model = init_model(str(config), str(run_dir / "iter_4.pth"), device="cpu")
    image = next((cityscapes_root / "leftImg8bit" / "val").rglob("*.png"))
    pred = inference_model(model, str(image)).pred_sem_seg.data
    assert pred.shape == (1, 64, 128) and int(pred.max()) < len(TRAIN_CLASSES)


@pytest.mark.slow
def test_two_process_torchrun(cityscapes_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = torchrun_command(
        2, [__file__, "--data-root", str(cityscapes_root), "--out", str(tmp_path)]
    )
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1]  # every rank returns rank 0's record
    rec = results[0]
    assert rec["protocol"]["world_size"] == 2 and rec["protocol"]["global_batch"] == 4
    _check_record(rec, random_ticket(), "fcn")
    assert [p.name for p in (tmp_path / "out" / "records" / "segmentation").iterdir()] == [
        "cityscapes"
    ]


def _worker(data_root: Path, out: Path) -> None:
    from bench.engine.distributed import destroy_distributed, init_distributed

    info = init_distributed()
    assert info.world_size == 2
    run = tiny_run(random_ticket(), "fcn", data_root=data_root, out_root=out / "out")
    rec = SegmentationTask().run(run)
    (out / f"rank{info.rank}.json").write_text(json.dumps(rec))
    destroy_distributed()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    _worker(a.data_root, a.out)
