"""The crowd-counting task: options, metrics, init from a classification checkpoint, and
short end-to-end runs on the real-annotation sample (tests/fixtures_crowd.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_crowd import write_crowd_root

from bench.engine.checkpoint import save_checkpoint
from bench.models.slots import build_ticket_model
from bench.runs.cell import run_transfer
from bench.runs.records import iter_records
from bench.runs.transfer import TASKS, TransferRun
from bench.ticket.schema import load_ticket, make_ticket
from bench.util.errors import BenchError
from tasks.crowd_counting.cache import cached_density
from tasks.crowd_counting.data import list_split, read_points
from tasks.crowd_counting.dataset import Item, WholeImages
from tasks.crowd_counting.density import DensitySpec
from tasks.crowd_counting.metrics import MSE_ALIAS_NOTE, evaluate_counts
from tasks.crowd_counting.model import CrowdCounter
from tasks.crowd_counting.options import apply_length, resolve, steps_per_epoch
from tasks.crowd_counting.task import CrowdCell

TICKETS = Path(__file__).resolve().parent.parent / "tickets"
PROV = {"kind": "baseline", "baseline": "random", "seed": 0}


def r18(mask=(1, 0, 0, 1, 1, 0, 0, 1), name: str = "r18-se") -> object:
    return make_ticket(name, "resnet18", "se", list(mask), PROV)


def test_registered_task(crowd_root: Path, tmp_path: Path) -> None:
    task = TASKS.get("crowd_counting")()
    assert task.datasets == ("shanghaitech-a", "shanghaitech-b")
    assert task.metric == "mae" and task.higher_is_better is False
    assert task.missing("shanghaitech-a", crowd_root) is None
    msg = task.missing("shanghaitech-b", tmp_path)
    assert msg and "part_B" in msg and "\n" not in msg


def test_protocols_and_options(crowd_root: Path, tmp_path: Path) -> None:
    name, hp, opts = resolve({}, crowd_root / "part_A")
    assert name == "short"  # the bundled sample data
    real = write_crowd_root(tmp_path)
    (real / "ticketbench-sample.json").unlink()
    name, hp, opts = resolve({}, real / "part_A")
    assert name == "csrnet"
    assert (hp.lr, hp.momentum, hp.weight_decay, hp.batch_size) == (1e-7, 0.95, 5e-4, 1)
    assert opts.crop_size == 0 and opts.crops_per_image == 4
    name, hp, opts = resolve(
        {"protocol": "short", "hparams": {"lr": 0.01}, "border": "cut", "crop_size": 32},
        real / "part_A",
    )
    assert (name, hp.lr, opts.border, opts.crop_size) == ("short", 0.01, "cut", 32)
    assert opts.density_spec("shanghaitech-a").kernel == "adaptive"
    assert opts.density_spec("shanghaitech-b").kernel == "fixed"
    assert opts.density_spec("shanghaitech-b").sigma == 15.0
    with pytest.raises(BenchError, match="batch_size 1"):
        resolve({"protocol": "short", "crop_size": 0}, real / "part_A")
    with pytest.raises(BenchError, match="unknown crowd counting protocol"):
        resolve({"protocol": "fast"}, real / "part_A")
    with pytest.raises(BenchError, match="unknown CrowdOptions field"):
        resolve({"sigmaa": 3}, real / "part_A")
    with pytest.raises(BenchError, match="border"):
        resolve({"border": "wrap"}, real / "part_A")


def test_iters_map_onto_epochs() -> None:
    hp = resolve({"protocol": "short"}, Path("/nonexistent"))[1]
    spe = steps_per_epoch(18, 4, 1)
    assert spe == 5
    assert steps_per_epoch(17, 4, 1) == 4  # the engine drops a one-sample last batch
    out = apply_length(hp, None, 12, spe)
    assert out.epochs == 3 and out.epochs * spe >= 12 > (out.epochs - 1) * spe
    assert apply_length(hp, 2, None, spe).epochs == 2
    with pytest.raises(BenchError, match="not both"):
        apply_length(hp, 2, 12, spe)


def test_every_ticket_bit_applies_at_stride_8() -> None:
    ticket = load_ticket(TICKETS / "resnet50-sge-stage-ean.json")
    model = CrowdCounter(ticket).eval()
    assert model.output_stride == 8
    assert model.frontend.mask == ticket.mask
    calls = []
    for blk in model.frontend.blocks():
        blk.register_forward_hook(lambda m, i, o: calls.append(m.active))
    sam_calls = []
    for sam in model.sam_modules():
        sam.register_forward_hook(lambda m, i, o: sam_calls.append(1))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 40, 48))
    assert out.shape == (1, 1, 5, 6)
    assert calls == [bool(b) for b in ticket.mask]  # every block of every stage runs
    assert len(sam_calls) == ticket.kept  # the shared SGE runs once per connected block


def test_init_from_classification_checkpoint(tmp_path: Path) -> None:
    from bench.runs.pretrained import file_init, load_backbone

    ticket = r18()
    torch.manual_seed(1)
    clf = build_ticket_model(ticket, num_classes=10)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, {"model": clf.state_dict(), "epoch": 3})
    torch.manual_seed(2)
    counter = CrowdCounter(ticket)
    report = load_backbone(counter.frontend, file_init(ckpt), ticket)
    assert report.unexpected == ("fc.weight", "fc.bias")  # the classifier is not carried over
    own = counter.frontend.state_dict()
    for k, v in clf.state_dict().items():
        if not k.startswith("fc."):
            torch.testing.assert_close(own[k], v)
    # Another mask of the same backbone: other SAM modules, so the weights do not fit.
    other = CrowdCounter(r18(mask=(0, 1, 1, 0, 0, 1, 1, 0), name="other"))
    with pytest.raises(BenchError) as e:
        load_backbone(other.frontend, file_init(ckpt))
    assert "do not fit" in str(e.value)
    assert "\n" not in str(e.value)


class ConstantMap(torch.nn.Module):
    """Predicts `value` in every cell of the stride-8 grid (ceil(H/8) x ceil(W/8))."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = -(-x.shape[-2] // 8), -(-x.shape[-1] // 8)
        return self.p + torch.zeros(x.shape[0], 1, h, w)


def _part_a_test_images(tmp_path: Path) -> tuple[WholeImages, list[int]]:
    root = write_crowd_root(tmp_path)
    samples = list_split(root / "part_A", "test")
    items = []
    for s in samples:
        e = cached_density(s, DensitySpec())
        items.append(Item(s.image, e.path, e.annotated, e.shape))
    counts = [len(read_points(s.annotation)) for s in samples]
    return WholeImages(items, stride=8), counts


def test_mae_and_rmse_against_annotated_counts(tmp_path: Path) -> None:
    data, counts = _part_a_test_images(tmp_path)
    # The sample's part_A test split: 4 images of 125x128 or 128x128 pixels holding 6, 7, 6
    # and 12 annotated heads. Both sizes give a 16 x 16 = 256-cell stride-8 output grid.
    assert counts == [6, 7, 6, 12]
    assert [it.shape for it in data.items] == [(125, 128), (128, 128), (125, 128), (128, 128)]
    for i in range(len(data)):
        assert data[i][1].shape == (1, 16, 16) and data[i][2].item() == counts[i]

    # A constant map of 1/32 per cell: every predicted count is 256 / 32 = 8.
    #   errors (pred - annotated): 8-6 = 2, 8-7 = 1, 8-6 = 2, 8-12 = -4
    #   MAE  = (2 + 1 + 2 + 4) / 4 = 9 / 4 = 2.25
    #   RMSE = sqrt((4 + 1 + 4 + 16) / 4) = sqrt(25 / 4) = 2.5
    m = evaluate_counts(ConstantMap(1 / 32), data, "cpu", 64)
    assert m["n"] == 4
    assert m["mean_pred_count"] == pytest.approx(8.0, abs=1e-6)
    assert m["mae"] == pytest.approx(2.25, abs=1e-6)
    assert m["rmse"] == pytest.approx(2.5, abs=1e-6)
    # The loss: per image, the sum of squares of (1/32 - pooled target) over the 256 cells,
    # averaged over the 4 images.
    loss = np.mean([((1 / 32 - data[i][1].double()) ** 2).sum().item() for i in range(4)])
    assert m["loss"] == pytest.approx(loss, rel=1e-9)

    # A constant map of 3/256 per cell: every predicted count is 3.
    #   errors: 3-6 = -3, 3-7 = -4, 3-6 = -3, 3-12 = -9
    #   MAE  = (3 + 4 + 3 + 9) / 4 = 19 / 4 = 4.75
    #   RMSE = sqrt((9 + 16 + 9 + 81) / 4) = sqrt(115 / 4) = sqrt(28.75) = 5.3619026...
    m = evaluate_counts(ConstantMap(3 / 256), data, "cpu", 64)
    assert m["mean_pred_count"] == pytest.approx(3.0, abs=1e-6)
    assert m["mae"] == pytest.approx(4.75, abs=1e-6)
    assert m["rmse"] == pytest.approx(5.361902647, abs=1e-6)

    # The zero map: every predicted count is 0, so the errors are the counts themselves.
    #   MAE  = (6 + 7 + 6 + 12) / 4 = 31 / 4 = 7.75
    #   RMSE = sqrt((36 + 49 + 36 + 144) / 4) = sqrt(265 / 4) = sqrt(66.25) = 8.1394102...
    m = evaluate_counts(ConstantMap(0.0), data, "cpu", 64)
    assert m["mean_pred_count"] == 0.0
    assert m["mae"] == pytest.approx(7.75, abs=1e-6)
    assert m["rmse"] == pytest.approx(8.139410298, abs=1e-6)
    # The loss is then the per-image sum of squares of the pooled target.
    loss = np.mean([(data[i][1].double() ** 2).sum().item() for i in range(4)])
    assert m["loss"] == pytest.approx(loss, rel=1e-9) and m["loss"] > 0


@pytest.mark.slow
def test_short_training_run_resume_skip_cover(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path / "data")
    ticket = r18()
    out_root = tmp_path / "out"
    # Small crops and a cheap cost measurement keep this to seconds on 2 cores.
    options = {"crop_size": 48, "cost_size": (64, 64), "latency_repeats": 2}
    # Killed after its first epoch, then resumed by the task's run (mode new).
    run = TransferRun(
        ticket=ticket,
        dataset="shanghaitech-b",
        seed=0,
        out_root=out_root,
        data_root=root,
        iters=8,
        options=options,
    )
    part = run_transfer(CrowdCell(run, stop_after_epoch=1), run)
    assert part["status"] == "interrupted" and part["epochs"] == 1
    task = TASKS.get("crowd_counting")()
    rec = task.run(run)
    res, proto = rec["result"], rec["protocol"]
    assert res["extras"]["resumed_from_epoch"] == 1  # a run fact, not protocol
    assert res["metric"] == "mae" and res["higher_is_better"] is False
    assert 0 <= res["value"] <= res["extras"]["rmse"]  # RMSE >= MAE always
    assert res["extras"]["mse_alias_of_rmse"] == MSE_ALIAS_NOTE
    assert res["extras"]["n_test"] == 4
    # Training lowered the loss.
    assert res["extras"]["final_train_loss"] < res["extras"]["first_train_loss"]
    assert rec["setting"]["select_split"] == "val" and rec["setting"]["eval_split"] == "test"
    assert proto["selection"]["split"] == "val" and proto["selection"]["carved_from"] == "train"
    assert proto["density"]["normalization"] == "renormalize"
    assert proto["density"]["kernel"] == "fixed" and proto["density"]["sigma"] == 15.0
    assert proto["steps"] >= 8 and proto["iters_requested"] == 8 and proto["epochs"] == 2
    assert proto["output_stride"] == 8
    assert proto["data"]["train"]["map_mass"] == pytest.approx(
        proto["data"]["train"]["annotated_points"], abs=1e-3
    )
    assert rec["cost"]["params_sams"] > 0 and rec["cost"]["gflops"] > 0
    assert rec["cost"]["input_shape"] == [1, 3, 64, 64]
    [(path, stored)] = list(iter_records(out_root))
    assert path.parent == out_root / "records" / "crowd_counting" / "shanghaitech-b"
    assert stored["result"] == res
    # mode new again: the finished cell is skipped, same record.
    again = task.run(run)
    assert again["provenance"] == rec["provenance"]
    # mode cover: wiped and rerun from scratch; exact resume means the same numbers.
    fresh = task.run(TransferRun(**{**run.__dict__, "mode": "cover"}))
    assert fresh["result"]["extras"]["resumed_from_epoch"] is None
    assert fresh["provenance"]["timestamp"] >= rec["provenance"]["timestamp"]
    facts = ("resumed_from_epoch", "density_maps_built")  # how the run went, not its result
    same = {k: v for k, v in fresh["result"]["extras"].items() if k not in facts}
    assert same == {k: v for k, v in res["extras"].items() if k not in facts}
    assert fresh["result"]["value"] == res["value"]
