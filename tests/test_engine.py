"""Engine tests: learning, exact resume, schedules, hparams/CLI, run dirs, atomic files."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from bench.cli.args import add_mode_flag
from bench.engine import (
    PRESETS,
    TrainHParams,
    add_hparam_args,
    add_train_args,
    build_optimizer,
    capture_rng_state,
    evaluate,
    hparams_from_args,
    load_checkpoint,
    load_model_weights,
    lr_factor,
    nondefault,
    prepare_run,
    restore_rng_state,
    run_dir,
    run_hash,
    save_checkpoint,
    seed_everything,
    train,
)
from bench.engine.hparams import hparam, within
from bench.engine.rundir import CheckpointEvery, checkpoint_every
from bench.engine.schedule import LRSchedule
from bench.util.errors import BenchError
from bench.util.io import (
    HOST,
    append_jsonl,
    atomic_path,
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    read_json,
    read_jsonl,
    remove_stale_temps,
)

# --- small real modules and data -------------------------------------------------------


class TinyNet(nn.Module):
    """Conv + BatchNorm + Dropout: enough state and randomness to test resume."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.features(x)))


def blobs(n: int, classes: int = 10, seed: int = 0, noise: float = 0.7) -> TensorDataset:
    """Learnable synthetic images: a fixed random template per class plus noise."""
    g = torch.Generator().manual_seed(1234)  # templates shared by every split
    templates = torch.randn(classes, 3, 8, 8, generator=g)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = templates[y] + noise * torch.randn(n, 3, 8, 8, generator=g)
    return TensorDataset(x, y)


class Augmented(Dataset):
    """Random augmentation drawing on all three global RNGs (torch, numpy, python)."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i]
        if torch.rand(()) < 0.5:
            x = x.flip(-1)
        x = torch.roll(x, random.randint(-1, 1), dims=-2)
        x = x + torch.from_numpy(np.random.normal(0, 0.05, size=x.shape).astype(np.float32))
        return x, y


def hp_small(**kw) -> TrainHParams:
    base = dict(epochs=3, batch_size=32, eval_batch_size=64, lr=0.05, warmup_epochs=1)
    return TrainHParams(**{**base, **kw})


def quiet(_msg: str) -> None:
    pass


# --- training ---------------------------------------------------------------------------


def test_train_learns_and_writes_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyNet(10)
    val = blobs(200, seed=1)
    res = train(
        model,
        blobs(640, seed=0),
        {"val": val, "test": blobs(200, seed=2)},
        hp_small(),
        tmp_path,
        "cpu",
        select_on="val",
        log=quiet,
        progress=False,
    )
    assert res["complete"] and res["epochs"] == 3 and res["resumed_from"] is None
    assert res["steps"] == 3 * 20 == res["steps_per_epoch"] * 3
    losses = [r["train"]["loss"] for r in res["history"]]
    assert losses[-1] < 0.5 * losses[0]
    assert res["final"]["val"]["top1"] > 60  # chance is 10
    assert res["final"]["val"]["top5"] is not None and res["final"]["val"]["n"] == 200
    assert res["wall_time_s"] > 0
    best = res["best"]
    assert best["on"] == "val" and best["top1"] == max(
        r["eval"]["val"]["top1"] for r in res["history"]
    )

    lines = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 3] and lines == res["history"]
    assert not (tmp_path / "result.json").exists()  # the caller writes it
    # best.pt reproduces the best epoch's held-out score through the public evaluate.
    fresh = TinyNet(10)
    load_model_weights(fresh, tmp_path / "best.pt")
    assert evaluate(fresh, val, "cpu", 50)["top1"] == pytest.approx(best["metrics"]["val"]["top1"])
    # The model object holds the final weights, as latest.pt does.
    latest = load_checkpoint(tmp_path / "latest.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, latest["model"][k])


class PidTagged(Dataset):
    """`base`, leaving a file named after the process that read each item."""

    def __init__(self, base: TensorDataset, folder: Path) -> None:
        self.base, self.folder = base, folder

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        (self.folder / str(os.getpid())).touch()
        return self.base[i]


def test_training_workers_live_across_epochs(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    torch.manual_seed(0)
    train(TinyNet(10), PidTagged(blobs(64), pids), {}, hp_small(epochs=3, num_workers=1),
          tmp_path / "run", "cpu", select_on=None, log=quiet, progress=False)  # fmt: skip
    # One worker process served all three epochs (respawned, it would be three).
    assert len(list(pids.iterdir())) == 1 and not (pids / str(os.getpid())).exists()


def test_eval_loaders_are_built_once_per_run(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    torch.manual_seed(0)
    held = PidTagged(blobs(16, seed=1), pids)
    hp = hp_small(epochs=3, num_workers=1)
    net = TinyNet(10)
    res = train(net, blobs(64), {"heldout": held}, hp, tmp_path / "run", "cpu",
                select_on=None, log=quiet, progress=False)  # fmt: skip
    # One eval worker process served all three evaluations (rebuilt, it would be three).
    assert len(list(pids.iterdir())) == 1 and not (pids / str(os.getpid())).exists()
    # The last evaluation equals one with a loader of its own and no workers.
    ref = evaluate(net, blobs(16, seed=1), "cpu", hp.eval_batch_size)
    assert res["history"][-1]["eval"]["heldout"] == ref


def test_eval_every_and_eval_limit_space_and_shrink_evaluation(tmp_path: Path) -> None:
    from bench.engine.loop import eval_subset

    torch.manual_seed(0)
    hp = hp_small(epochs=3, eval_every=2, eval_limit=50)
    res = train(TinyNet(10), blobs(320), {"val": blobs(200, seed=1)}, hp, tmp_path, "cpu",
                select_on="val", log=quiet, progress=False)  # fmt: skip
    evals = [r["eval"] for r in res["history"]]
    assert evals[0] == {} and evals[1]["val"]["n"] == evals[2]["val"]["n"] == 50  # 2, last
    assert res["best"]["epoch"] in (2, 3) and res["final"] == evals[2]
    # The same 50 items in every run, in dataset order; the defaults hash as before.
    a, b = eval_subset(blobs(200), 50), eval_subset(blobs(200), 50)
    assert a.indices == b.indices == sorted(a.indices) and len(set(a.indices)) == 50
    assert eval_subset(blobs(20), 50).__class__ is TensorDataset
    assert (
        run_hash(IDENT, TrainHParams(eval_every=1, eval_limit=0))
        == run_hash(IDENT, TrainHParams())
        != run_hash(IDENT, TrainHParams(eval_limit=1000))
    )


def test_channels_last_on_cpu_trains_the_same_network(tmp_path: Path) -> None:
    # channels_last runs on CPU too (oneDNN's channels-last kernels): its convolution
    # weights in that format, nothing said to be "ignored", and the same training up to
    # rounding. Its first-layer weight gradients are less exact there (about 1e-3 of their
    # norm from float64, against 1e-6 contiguous), so updates are compared, not bits.
    from bench.models.resnet import build_model

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 3, 16, 16, generator=g),
                         torch.randint(0, 10, (64,), generator=g))  # fmt: skip
    nets, said = {}, []
    for cl in (False, True):
        torch.manual_seed(0)
        nets[cl] = build_model("resnet20", num_classes=10)
        train(nets[cl], data, {}, hp_small(epochs=1, channels_last=cl), tmp_path / str(cl),
              "cpu", select_on=None, log=said.append, progress=False)  # fmt: skip
    torch.manual_seed(0)
    init = build_model("resnet20", num_classes=10).state_dict()
    conv = next(m for m in nets[True].modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any("channels_last" in line for line in said)
    plain, cl = nets[False].state_dict(), nets[True].state_dict()
    assert plain.keys() == cl.keys()
    for k in (k for k, v in plain.items() if v.is_floating_point()):
        step = (plain[k] - init[k]).norm()
        assert (cl[k] - plain[k]).norm() <= 0.05 * step + 1e-6, k  # measured: at most 0.025


def test_evaluate_counts_and_restores_mode() -> None:
    torch.manual_seed(0)
    model = TinyNet(3).train()
    ds = blobs(25, classes=3)
    out = evaluate(model, ds, "cpu", batch_size=7)
    assert out["n"] == 25 and out["top5"] is None and 0 <= out["top1"] <= 100
    assert model.training
    # Batch size does not change the numbers (eval mode: no dropout, running BN stats).
    again = evaluate(model, ds, "cpu", batch_size=25)
    assert again["top1"] == out["top1"] and again["loss"] == pytest.approx(out["loss"], rel=1e-6)
    with pytest.raises(BenchError):
        evaluate(model, blobs(0, classes=3), "cpu")


def _strip_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def _run(path: Path, hp: TrainHParams, stop: int | None = None, init_seed: int = 0,
         **kw) -> dict:  # fmt: skip
    torch.manual_seed(init_seed)
    model = TinyNet(4)
    res = train(
        model,
        Augmented(blobs(90, classes=4, seed=0)),
        {"val": blobs(40, classes=4, seed=1)},
        hp,
        path,
        "cpu",
        select_on="val",
        log=quiet,
        stop_after_epoch=stop,
        progress=False,
        **kw,
    )
    res["state"] = model.state_dict()
    return res


class Killed(Exception):
    """Stands in for a kill (the subprocess tests in test_kill_resume.py use real ones)."""


def _kill_before(step: int):
    def hook(s: int) -> None:
        if s == step:
            raise Killed(f"killed before step {step}")

    return hook


def _assert_same_run(ref: dict, res: dict) -> None:
    for k in ref["state"]:
        assert torch.equal(ref["state"][k], res["state"][k]), k
    assert _strip_times(res["history"]) == _strip_times(ref["history"])
    assert res["best"] == ref["best"] and res["steps"] == ref["steps"]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_mid_epoch_checkpoint_resumes_at_the_same_batch(tmp_path: Path, num_workers: int) -> None:
    # 6 steps per epoch; checkpoints every 2 batches; killed before step 10 (epoch 2,
    # batch 4 done, checkpointed at batch 4), then before step 15 (epoch 3, batch 3 done,
    # the last checkpoint at batch 2: one batch is trained again).
    hp = hp_small(epochs=3, batch_size=16, schedule="step", milestones=(2,),
                  num_workers=num_workers)  # fmt: skip
    ref = _run(tmp_path / "a", hp, checkpoint=CheckpointEvery(seconds=None))
    every2 = CheckpointEvery(seconds=None, batches=2)
    for step in (10, 15):
        with pytest.raises(Killed):
            _run(tmp_path / "b", hp, checkpoint=every2, before_step=_kill_before(step))
        ckpt = load_checkpoint(tmp_path / "b" / "latest.pt")
        assert (ckpt["epoch"], ckpt["batch"]) == ((1, 4) if step == 10 else (2, 2))
        assert len(ckpt["partial"]["sums"]) == 1 and ckpt["partial"]["sums"][0][2] > 0
        seed_everything(987)  # a "restart": scrambled global RNGs
    res = _run(tmp_path / "b", hp, init_seed=5, checkpoint=every2)
    assert res["resumed_from"] == 2 and res["complete"]
    _assert_same_run(ref, res)
    assert _strip_times(read_jsonl(tmp_path / "b" / "metrics.jsonl")) == _strip_times(
        ref["history"]
    )


def test_time_based_checkpoint_every_step(tmp_path: Path) -> None:
    """0 s: a checkpoint after every step; the run still ends where an unchecked one does."""
    hp = hp_small(epochs=1, batch_size=16)
    ref = _run(tmp_path / "a", hp, checkpoint=CheckpointEvery(seconds=None))
    with pytest.raises(Killed):
        _run(tmp_path / "b", hp, checkpoint=CheckpointEvery(seconds=0), before_step=_kill_before(3))
    assert load_checkpoint(tmp_path / "b" / "latest.pt")["batch"] == 3
    _assert_same_run(ref, _run(tmp_path / "b", hp, checkpoint=CheckpointEvery(seconds=None)))


def test_checkpoint_interval_parsing(monkeypatch) -> None:
    parse = CheckpointEvery.parse
    assert parse("10m") == CheckpointEvery(600.0) == CheckpointEvery()
    assert parse("90s") == parse("90") == CheckpointEvery(90.0)
    assert parse("1h").seconds == 3600.0 and parse("0") == CheckpointEvery(0.0)
    assert parse("25b") == CheckpointEvery(None, 25) == parse("25 batches")
    assert parse("epoch") == CheckpointEvery(None, None)
    for bad in ("soon", "-1m", "0b", "2.5b", ""):
        with pytest.raises(ValueError):
            parse(bad)
    monkeypatch.delenv("TICKETBENCH_CHECKPOINT_EVERY", raising=False)
    assert checkpoint_every() == CheckpointEvery(600.0)
    p = argparse.ArgumentParser()
    add_mode_flag(p)
    assert p.parse_args(["--checkpoint-every", "7b"]).checkpoint_every == "7b"
    assert checkpoint_every() == CheckpointEvery(None, 7)  # exported for the engine
    monkeypatch.setenv("TICKETBENCH_CHECKPOINT_EVERY", "often")
    with pytest.raises(BenchError, match="TICKETBENCH_CHECKPOINT_EVERY"):
        checkpoint_every()
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint-every", "often"])
    # Not a hyperparameter: the run hash does not see it.
    assert "checkpoint" not in json.dumps(TrainHParams().to_dict())


@pytest.mark.parametrize("num_workers", [0, 1])
def test_kill_and_resume_is_bit_exact(tmp_path: Path, num_workers: int) -> None:
    # 90 samples / batch 16: a short last batch; step drops mid-run; warm-up; dropout; BN.
    hp = hp_small(
        epochs=4, batch_size=16, schedule="step", milestones=(2, 3), num_workers=num_workers
    )
    ident = {"dataset": "blobs", "model": "tiny"}
    whole = prepare_run(tmp_path / "a", "train", ident, hp)
    assert whole.action == "start"
    ref = _run(whole.path, hp)

    part = prepare_run(tmp_path / "b", "train", ident, hp)
    first = _run(part.path, hp, stop=2)
    assert not first["complete"] and first["epochs"] == 2
    # The "restart": scrambled global RNGs and a differently initialised model object.
    seed_everything(987)
    again = prepare_run(tmp_path / "b", "train", ident, hp)
    assert again.action == "resume"
    res = _run(again.path, hp, init_seed=5)
    assert res["resumed_from"] == 2 and res["complete"] and res["steps"] == ref["steps"]

    assert ref["state"].keys() == res["state"].keys()
    for k in ref["state"]:
        assert torch.equal(ref["state"][k], res["state"][k]), k
    assert _strip_times(res["history"]) == _strip_times(ref["history"])
    assert res["best"] == ref["best"] and res["final"] == ref["final"]
    assert _strip_times(read_jsonl(again.path / "metrics.jsonl")) == _strip_times(ref["history"])
    a, b = load_checkpoint(whole.path / "best.pt"), load_checkpoint(again.path / "best.pt")
    assert a["epoch"] == b["epoch"] and all(
        torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
    )


def test_resume_without_rng_restore_differs(tmp_path: Path, monkeypatch) -> None:
    """Control for the test above: it does detect a missing RNG restore."""
    hp = hp_small(epochs=2, batch_size=16)
    ref = _run(tmp_path / "a", hp)
    _run(tmp_path / "b", hp, stop=1)
    seed_everything(987)
    monkeypatch.setattr("bench.engine.loop.restore_rng_state", lambda state: None)
    res = _run(tmp_path / "b", hp)
    assert any(not torch.equal(ref["state"][k], res["state"][k]) for k in ref["state"])


def test_train_rejects_bad_input(tmp_path: Path) -> None:
    model, data = TinyNet(4), blobs(32, classes=4)
    with pytest.raises(BenchError, match="select_on"):
        train(model, data, {"val": data}, hp_small(), tmp_path, "cpu", select_on="test", log=quiet)
    train(model, data, {"val": data}, hp_small(epochs=2), tmp_path, "cpu", select_on="val",
          log=quiet, stop_after_epoch=1)  # fmt: skip
    with pytest.raises(BenchError, match="different hparams"):
        train(model, data, {}, hp_small(epochs=2, lr=0.2), tmp_path, "cpu", select_on=None,
              log=quiet)  # fmt: skip
    (tmp_path / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="cannot read checkpoint"):
        train(model, data, {}, hp_small(epochs=2), tmp_path, "cpu", select_on=None, log=quiet)


# --- schedule ---------------------------------------------------------------------------


def test_step_schedule_hand_checked() -> None:
    hp = TrainHParams(epochs=10, warmup_epochs=2, schedule="step", milestones=(5, 8), gamma=0.1)
    spe = 5  # warm-up = 10 steps; drops at steps 25 and 40
    expect = {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 24: 1.0, 25: 0.1, 39: 0.1, 40: 0.01, 49: 0.01}
    for step, f in expect.items():
        assert lr_factor(step, hp, spe) == pytest.approx(f), step


def test_cosine_schedule_hand_checked() -> None:
    hp = TrainHParams(epochs=10, warmup_epochs=2, schedule="cosine")
    spe = 5  # warm-up 10 steps, then cosine over 40
    assert lr_factor(0, hp, spe) == pytest.approx(0.1)
    assert lr_factor(9, hp, spe) == pytest.approx(1.0)
    assert lr_factor(10, hp, spe) == pytest.approx(1.0)
    assert lr_factor(30, hp, spe) == pytest.approx(0.5)
    assert lr_factor(49, hp, spe) == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert lr_factor(49, hp, spe) < 0.002
    assert lr_factor(50, hp, spe) == pytest.approx(0.0, abs=1e-12)
    no_warm = TrainHParams(epochs=4, warmup_epochs=0)
    assert lr_factor(0, no_warm, 3) == 1.0


def test_optimizer_groups_and_schedule_apply() -> None:
    model = TinyNet(4)
    hp = TrainHParams(lr=0.2, weight_decay=1e-3, decay_norm_and_bias=False, nesterov=True)
    opt = build_optimizer(model, hp)
    decays = sorted(g["weight_decay"] for g in opt.param_groups)
    assert decays == [0.0, 1e-3] and all(g["nesterov"] for g in opt.param_groups)
    no_decay = next(g for g in opt.param_groups if g["weight_decay"] == 0.0)
    assert all(p.ndim == 1 for p in no_decay["params"])  # BN weight/bias, fc bias
    sched = LRSchedule(opt, hp, steps_per_epoch=4)  # default: 1 warm-up epoch
    assert sched.apply(0) == pytest.approx(0.05)
    assert all(g["lr"] == pytest.approx(0.05) for g in opt.param_groups)
    assert sched.apply(3) == pytest.approx(0.2)
    assert len(build_optimizer(model, TrainHParams()).param_groups) == 1


# --- hparams and the command line -------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_train_args(p)
    add_mode_flag(p)
    return p


def _from_args(args: argparse.Namespace) -> TrainHParams:
    """The preset named by `--preset` with the given flags laid over it, as `bench train`."""
    return hparams_from_args(args, PRESETS.get(args.preset))


def _argv_for(hp: TrainHParams) -> list[str]:
    argv = []
    for k, v in hp.to_dict().items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + flag[2:])
        elif isinstance(v, list):
            argv += [flag, ",".join(map(str, v))]
        else:
            argv += [flag, str(v)]
    return argv


def test_argparse_round_trip() -> None:
    p = _parser()
    odd = TrainHParams(
        epochs=7, batch_size=64, lr=0.0123, nesterov=True, schedule="step",
        milestones=(2, 5), gamma=0.2, warmup_epochs=0, label_smoothing=0.1, amp=True,
        amp_dtype="fp16", channels_last=True, compile=True, num_workers=3, seed=42,
        decay_norm_and_bias=False,
    )  # fmt: skip
    args = p.parse_args(_argv_for(odd))
    assert _from_args(args) == odd
    assert args.mode == "new"
    # No flags: the preset itself; flags lay over the chosen preset.
    assert _from_args(p.parse_args([])) == PRESETS.get("short") == TrainHParams()
    args = p.parse_args(["--preset", "cifar-resnet164", "--lr", "0.05", "--milestones", "10,20"])
    assert _from_args(args) == PRESETS.get("cifar-resnet164").replace(lr=0.05, milestones=(10, 20))
    args = p.parse_args(["--preset", "cifar-resnet164", "--milestones", "", "--mode", "cover"])
    assert _from_args(args).milestones == () and args.mode == "cover"
    assert "(> 0; default: 0.1)" in p.format_help()  # lr: its declared range, its default


def test_bad_flag_values() -> None:
    p = _parser()
    for argv in (["--schedule", "linear"], ["--epochs", "x"], ["--milestones", "1,a"]):
        with pytest.raises(SystemExit):
            p.parse_args(argv)
    with pytest.raises(BenchError, match="epochs"):
        _from_args(p.parse_args(["--epochs", "0"]))
    with pytest.raises(BenchError, match="milestones"):
        _from_args(p.parse_args(["--epochs", "5", "--milestones", "3,2"]))
    with pytest.raises(BenchError, match="unknown training preset"):
        _from_args(p.parse_args(["--preset", "nope"]))


# Interval notation: a bracket includes its end, a parenthesis excludes it.
@pytest.mark.parametrize(
    "value, bound, ok",
    [(1, ">= 1", True), (0.999, ">= 1", False), (0, "> 0", False), (1e-9, "> 0", True),
     (0, "in [0, 1)", True), (1, "in [0, 1)", False), (1, "in [0, 1]", True),
     (0, "in (0, 1)", False), (0.5, "in (0, 1)", True), (-0.1, "in [0, 1]", False)],
)  # fmt: skip
def test_declared_bounds(value: float, bound: str, ok: bool) -> None:
    assert within(value, bound) is ok


def test_bounds_reject_with_the_field_name() -> None:
    assert TrainHParams(momentum=0.0).momentum == 0.0  # the closed end is allowed
    with pytest.raises(BenchError, match=r"^bad training hparams: momentum must be in \[0, 1\)$"):
        TrainHParams(momentum=1.0)
    with pytest.raises(BenchError, match=r"^bad training hparams: lr must be > 0$"):
        TrainHParams(lr=0.0)


def test_prefixed_flags_for_a_second_dataclass() -> None:
    @dataclasses.dataclass(frozen=True)
    class SearchHP(TrainHParams):
        steps: int = hparam(300, "controller steps")

    p = argparse.ArgumentParser()
    add_hparam_args(p, SearchHP, prefix="search-")
    args = p.parse_args(["--search-steps", "10", "--search-lr", "0.05"])
    hp = hparams_from_args(args, SearchHP(), prefix="search-")
    assert hp.steps == 10 and hp.lr == 0.05


def test_presets_match_paper() -> None:
    c = PRESETS.get("cifar-resnet164")
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay) == (164, 128, 0.1, 0.9, 1e-4)
    assert (c.schedule, c.milestones, c.gamma, c.warmup_epochs) == ("step", (81, 122), 0.1, 0)
    i = PRESETS.get("imagenet-resnet50")
    assert (i.epochs, i.batch_size, i.lr, i.weight_decay, i.milestones) == (
        120, 256, 0.1, 1e-4, (30, 60, 90),
    )  # fmt: skip
    s = PRESETS.get("short")
    assert (s.epochs, s.schedule, s.warmup_epochs, s.weight_decay) == (3, "cosine", 1, 5e-4)


def test_dict_round_trip_and_coercion() -> None:
    hp = TrainHParams(lr=1, milestones=[1], epochs=3, schedule="step")
    assert hp.lr == 1.0 and isinstance(hp.lr, float) and hp.milestones == (1,)
    back = TrainHParams.from_dict(json.loads(json.dumps(hp.to_dict())))
    assert back == hp
    assert TrainHParams.from_dict({}) == TrainHParams()  # absent fields take defaults
    with pytest.raises(BenchError, match="unknown"):
        TrainHParams.from_dict({"learning_rate": 0.1})
    with pytest.raises(BenchError):
        TrainHParams(lr=float("nan"))
    with pytest.raises(BenchError):
        TrainHParams(nesterov=1)


# --- run directories --------------------------------------------------------------------

IDENT = {"dataset": "cifar100", "model": "resnet164-se", "ticket": "sha256:abc", "split": 5000}


def test_nondefault_only_hashing() -> None:
    assert nondefault(TrainHParams()) == {}
    assert nondefault(TrainHParams(lr=0.2, milestones=(1,), schedule="step")) == {
        "lr": 0.2,
        "milestones": [1],
        "schedule": "step",
    }
    # Explicitly passing a default value is the same run.
    assert run_hash(IDENT, TrainHParams(lr=0.1)) == run_hash(IDENT, TrainHParams())
    assert run_hash(IDENT, TrainHParams(lr=1)) == run_hash(IDENT, TrainHParams(lr=1.0))
    # Key order and tuple-vs-list in the identity don't matter; values do.
    shuffled = dict(reversed(list(IDENT.items())))
    assert run_hash(shuffled, TrainHParams()) == run_hash(IDENT, TrainHParams())
    assert run_hash({"a": (1, 2)}, TrainHParams()) == run_hash({"a": [1, 2]}, TrainHParams())
    assert run_hash({**IDENT, "split": 5001}, TrainHParams()) != run_hash(IDENT, TrainHParams())

    # A field added later WITH A DEFAULT keeps every old hash.
    @dataclasses.dataclass(frozen=True)
    class Later(TrainHParams):
        grad_clip: float = hparam(0.0, "added after runs existed")

    assert run_hash(IDENT, Later(lr=0.3)) == run_hash(IDENT, TrainHParams(lr=0.3))
    assert run_hash(IDENT, Later(grad_clip=1.0)) != run_hash(IDENT, TrainHParams())
    with pytest.raises(TypeError):
        run_hash({"path": Path("/x")}, TrainHParams())


def test_pinned_hashes() -> None:
    # Pinned on purpose. If this fails, the hash function, canonical JSON or a DEFAULT
    # changed, and every user's existing run directory is orphaned (reruns from scratch).
    # Only update these strings for a deliberate, announced break.
    assert run_hash(IDENT, TrainHParams()) == "dc8dd7f53232"
    assert run_hash(IDENT, PRESETS.get("cifar-resnet164")) == "ae239aca5d01"
    assert run_hash({"dataset": "fashion-mnist"}, TrainHParams(lr=0.05, seed=1)) == "ff617f2898ef"
    assert run_dir("/o", "train", {}, TrainHParams()) == Path("/o/train_60feb7498e4c")


def test_run_modes(tmp_path: Path) -> None:
    hp = TrainHParams(seed=3)
    plan = prepare_run(tmp_path, "train", IDENT, hp)
    assert plan.action == "start" and plan.path == run_dir(tmp_path, "train", IDENT, hp)
    meta = read_json(plan.path / "hparams.json")
    assert meta["identity"] == IDENT and meta["nondefault"] == {"seed": 3}
    assert TrainHParams.from_dict(meta["hparams"]) == hp
    # Unfinished with a checkpoint: resume. Finished: skip.
    (plan.path / "latest.pt").write_bytes(b"x")  # damaged: named, with the repair
    with pytest.raises(BenchError, match="latest.pt: not a torch checkpoint; .* --repair"):
        prepare_run(tmp_path, "train", IDENT, hp)
    save_checkpoint(plan.path / "latest.pt", {"epoch": 0, "step": 0})
    assert prepare_run(tmp_path, "train", IDENT, hp).action == "resume"
    atomic_write_json(plan.result_path, {"metric": "top1", "value": 1.0})
    assert prepare_run(tmp_path, "train", IDENT, hp).action == "skip"
    # cover: wipe and rerun.
    again = prepare_run(tmp_path, "train", IDENT, hp, mode="cover")
    assert again.action == "start" and again.path == plan.path
    assert sorted(p.name for p in plan.path.iterdir()) == ["hparams.json", "run.lock"]
    # A corrupt/foreign hparams.json is refused in mode new.
    atomic_write_json(plan.path / "hparams.json", {"identity": {"other": 1}, "nondefault": {}})
    with pytest.raises(BenchError, match="different run"):
        prepare_run(tmp_path, "train", IDENT, hp)
    with pytest.raises(BenchError, match="--mode"):
        prepare_run(tmp_path, "train", IDENT, hp, mode="overwrite")


# --- files ------------------------------------------------------------------------------


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half of it")
            raise RuntimeError("writer died")
    assert list(tmp_path.iterdir()) == []

    atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"v": object()})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"v": float("nan")})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_torch_save(target, {"w": torch.ones(1000), "boom": Boom()})
    assert read_json(target) == {"v": 1}  # the old content survives every failure
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temp files left


def test_stale_temps_are_those_of_dead_writers(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = {
        "dead": f".x.json.{HOST}-{dead.pid}.ab12cd34.tmp",
        "alive": f".x.json.{HOST}-{os.getpid()}.ab12cd34.tmp",
        "elsewhere": ".x.json.otherhost-1.ab12cd34.tmp",
        "other target": f".y.json.{HOST}-{dead.pid}.ab12cd34.tmp",
    }
    for name in names.values():
        (tmp_path / name).write_text("half")
    assert remove_stale_temps(tmp_path, "x.json") == [tmp_path / names["dead"]]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(n for k, n in names.items() if k != "dead")
    remove_stale_temps(tmp_path, any_writer=True)  # the run lock says nobody else writes
    assert list(tmp_path.iterdir()) == []
    # What atomic writes leave behind is named that way, and gets the usual file mode.
    atomic_write_json(tmp_path / "x.json", {"v": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.json") as tmp:
        assert tmp.name.startswith(f".x.json.{HOST}-{os.getpid()}.") and tmp.suffix == ".tmp"
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_jsonl_append_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"epoch": 1})
    append_jsonl(path, {"epoch": 2})
    with open(path, "a") as f:
        f.write('{"epoch": 3, "tr')  # a crash mid-append
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    assert read_jsonl(tmp_path / "absent.jsonl") == []


# --- checkpoints ------------------------------------------------------------------------


def test_rng_state_round_trip_weights_only(tmp_path: Path) -> None:
    seed_everything(7)
    atomic_torch_save(tmp_path / "rng.pt", capture_rng_state())
    draws = (random.random(), float(np.random.normal()), torch.rand(3))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), float(np.random.normal()), torch.rand(3))
    assert draws[:2] == again[:2] and torch.equal(draws[2], again[2])


def test_load_model_weights(tmp_path: Path) -> None:
    src = TinyNet(4)
    atomic_torch_save(tmp_path / "ddp.pt", {f"module.{k}": v for k, v in src.state_dict().items()})
    dst = TinyNet(4)
    load_model_weights(dst, tmp_path / "ddp.pt")
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    with pytest.raises(BenchError, match="does not fit"):
        load_model_weights(TinyNet(5), tmp_path / "ddp.pt")
    with pytest.raises(BenchError, match="not found"):
        load_model_weights(dst, tmp_path / "missing.pt")
    # Arbitrary pickles are refused by weights_only loading.
    torch.save({"model": {}, "x": argparse.Namespace(a=1)}, tmp_path / "evil.pt")
    with pytest.raises(BenchError, match="cannot read"):
        load_checkpoint(tmp_path / "evil.pt")
