"""End-to-end search on a tiny real Fashion-MNIST: ticket, logs, resume, budgets, CLI."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from fixtures_search import (
    DATASET,
    MODEL,
    TINY,
    one_thread_fixture,  # noqa: F401  (fixture "one_thread")
)

from bench.cli.commands.search import add_search_args, cmd_search
from bench.cli.main import add_run_flags
from bench.data.datasets import load_splits
from bench.models.resnet import ModelConfig, build_model
from bench.search.config import SearchConfig
from bench.search.hparams import SupernetHParams, resolve_preset
from bench.search.run import config_hash, run_search
from bench.search.supernet import MaskSampler, sample_mask, train_supernet
from bench.ticket.schema import load_ticket
from bench.util.errors import BenchError
from bench.util.io import read_json, read_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


def _runs(tmp_path: Path, supernet_runs: Path, name: str = "runs") -> Path:
    """A fresh out root that already holds the session's trained tiny supernet."""
    out = tmp_path / name
    shutil.copytree(supernet_runs, out)
    return out


def _search(out: Path, data_root: Path, **kwargs):
    args = {**TINY, **kwargs}
    if "search_overrides" in kwargs:
        args["search_overrides"] = {**TINY["search_overrides"], **kwargs["search_overrides"]}
    return run_search(DATASET, MODEL, out_root=out, data_root=data_root, **args)


def test_search_writes_a_valid_ticket(
    tmp_path: Path, search_fmnist_root: Path, search_supernet_runs: Path
) -> None:
    out = _runs(tmp_path, search_supernet_runs)
    save = tmp_path / "tickets" / "found.json"
    path, run_dir = _search(out, search_fmnist_root, iters=4, budget=12, seed=1, save_ticket=save)
    assert path == save and (run_dir / "ticket.json").read_text() == save.read_text()
    # The session's supernet was found and reused, not trained again.
    supernets = sorted(p.name for p in out.iterdir() if p.name.startswith("supernet_"))
    assert supernets == sorted(p.name for p in search_supernet_runs.iterdir())
    ticket = load_ticket(save)
    prov = ticket.provenance
    assert ticket.name == "found" and ticket.model_name == MODEL and ticket.total == 9
    assert (prov["kind"], prov["strategy"], prov["seed"], prov["dataset"]) == (
        "searched",
        "reinforce",
        1,
        DATASET,
    )
    assert prov["run"] == run_dir.name and (out / prov["supernet_run"] / "latest.pt").is_file()
    preset = resolve_preset(
        "short",
        DATASET,
        iters=4,
        budget=12,
        search=TINY["search_overrides"],
        supernet=TINY["supernet_overrides"],
        sampler=TINY["sampler_overrides"],
    )
    assert prov["config_hash"] == config_hash("reinforce", preset)
    split = prov["split"]
    assert split["sizes"] == {"train": 360, "heldout": 40, "test": 20}
    # Scored on the whole held-out split here (eval_subset 0): the same digest, never test.
    assert split["scoring_images"] == 40 and split["scoring_sha256"] == split["heldout_sha256"]

    episodes = read_jsonl(run_dir / "episodes.jsonl")
    rounds = read_jsonl(run_dir / "steps.jsonl")
    assert [r["step"] for r in rounds] == [0, 1, 2, 3]
    assert all(len(r["keep_prob"]) == 9 and "loss" in r for r in rounds)
    assert len(episodes) == 12 and [e["evaluation"] for e in episodes] == list(range(12))
    for e in episodes:
        off = e["mask"].count("0") / 9
        assert e["reward"] == pytest.approx(e["top1"] + 2 * off - 54)
        assert {"logp", "baseline", "advantage", "rnd_bonus"} <= set(e)
        assert e["advantage"] == pytest.approx(e["reward"] + e["rnd_bonus"] - e["baseline"])
    paid = [e for e in episodes if not e["cached"]]
    assert prov["budget"] == {"evaluations": 12, "spent": float(len(paid))}
    best = max(episodes, key=lambda e: (e["reward"], -e["evaluation"]))
    assert "".join(map(str, ticket.mask)) == best["mask"]
    assert prov["best"] == {k: best[k] for k in ("step", "evaluation", "top1", "reward", "density")}
    assert set(prov["reference"]) == {"full", "none"}
    assert (run_dir / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_json(run_dir / "result.json")["checksum"] == ticket.checksum

    # Finished: a second call reuses it without scoring anything.
    again, run_dir2 = _search(out, search_fmnist_root, iters=4, budget=12, seed=1)
    assert run_dir2 == run_dir and again == run_dir / "ticket.json"
    assert len(read_jsonl(run_dir / "episodes.jsonl")) == 12


def test_killed_search_resumes_to_the_same_ticket(
    tmp_path: Path, search_fmnist_root: Path, search_supernet_runs: Path
) -> None:
    # PPO from step 1, so the replay buffer and both optimizers cross the kill.
    kw = dict(iters=6, budget=18, seed=3, search_overrides={"ppo_start": 1})
    out_a = _runs(tmp_path, search_supernet_runs, "a")
    ticket_a, dir_a = _search(out_a, search_fmnist_root, **kw)

    out_b = _runs(tmp_path, search_supernet_runs, "b")
    none, dir_b = _search(out_b, search_fmnist_root, stop_after_steps=3, **kw)
    assert none is None and dir_b.name == dir_a.name
    assert not (dir_b / "ticket.json").exists()
    committed = read_jsonl(dir_b / "episodes.jsonl")
    assert len(committed) == 9
    # A kill between the log append and the checkpoint: a whole extra line and a torn one.
    with open(dir_b / "episodes.jsonl", "a") as f:
        f.write(json.dumps({**committed[-1], "evaluation": 9}) + "\n" + '{"step": 3, "mas')
    ticket_b, _ = _search(out_b, search_fmnist_root, **kw)

    assert ticket_b.read_bytes() == ticket_a.read_bytes()
    assert read_jsonl(dir_b / "episodes.jsonl") == read_jsonl(dir_a / "episodes.jsonl")
    assert read_jsonl(dir_b / "steps.jsonl") == read_jsonl(dir_a / "steps.jsonl")
    assert read_json(dir_b / "result.json")["resumed_from"] == 3


@pytest.mark.parametrize("strategy", ["random", "greedy", "evolution"])
def test_strategies_spend_the_budget_exactly(
    tmp_path: Path, search_fmnist_root: Path, search_supernet_runs: Path, strategy: str
) -> None:
    out = _runs(tmp_path, search_supernet_runs)
    kw = {"search_overrides": {"population": 4, "tournament": 2}}
    path, run_dir = _search(out, search_fmnist_root, strategy=strategy, budget=7, **kw)
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    paid = [e for e in episodes if not e["cached"]]
    assert len(paid) == 7 and read_json(run_dir / "result.json")["spent"] == 7.0
    assert load_ticket(path).provenance["strategy"] == strategy
    if strategy == "random":
        assert len({e["mask"] for e in episodes}) == 7  # never the same mask twice
    if strategy == "greedy":
        assert episodes[0]["mask"] == "1" * 9
        assert all(e["mask"].count("1") == 8 for e in episodes[1:])


def test_random_search_with_successive_halving(
    tmp_path: Path, search_fmnist_root: Path, search_supernet_runs: Path
) -> None:
    out = _runs(tmp_path, search_supernet_runs)
    halving = {"halving": True, "random_batch": 9, "halving_min_images": 5, "halving_eta": 3}
    path, run_dir = _search(
        out, search_fmnist_root, strategy="random", budget=4, search_overrides=halving
    )
    episodes = read_jsonl(run_dir / "episodes.jsonl")
    assert {e["n_images"] for e in episodes} == {5, 15, 40}
    assert sum(e["cost"] for e in episodes) <= 4.0 + 1e-9
    best = load_ticket(path).provenance["best"]
    finals = [e for e in episodes if e["final"]]
    assert best["reward"] == max(e["reward"] for e in finals)


def test_bad_input_fails_before_any_work(tmp_path: Path, search_fmnist_root: Path) -> None:
    """Every setting is checked before data is read or the supernet trains: one line
    naming the flag, nothing written (the out root stays empty)."""
    out = tmp_path / "out"
    out.mkdir()
    (a_file := tmp_path / "file").write_text("x")
    (a_dir := tmp_path / "dir.json").mkdir()
    bad = [
        ({"strategy": "annealing"}, "unknown search strategy"),
        ({"preset": "long"}, "unknown search preset"),
        ({"budget": 0}, "budget must be >= 1"),
        ({"save_ticket": tmp_path / "t.txt"}, "expected a .json path"),
        ({"save_ticket": a_dir}, "--save-ticket .*is a directory"),
        ({"search_overrides": {"bogus": 1}}, "unknown SearchHParams field"),
        ({"heldout": 0}, "--heldout 0: a search scores .* at least 1 image"),
        ({"heldout": "0/class"}, "--heldout 0/class: .* at least 1 image"),
        ({"heldout": "ten"}, "--heldout: held-out size 'ten'"),
        ({"mode": "redo"}, "--mode 'redo'"),
        ({"device": "tpu:x"}, "--device 'tpu:x'"),
        ({"out_root": a_file}, "--out .*file: expected a directory"),
        ({"data_root": tmp_path / "nowhere"}, "--data-root .*nowhere: no such directory"),
        ({"image_size": 0}, "--image-size 0"),
        ({"split_seed": -1}, "split seed -1"),
        ({"seed": 2**64}, "--seeds 18446744073709551616"),
    ]
    for kwargs, msg in bad:
        settings = {"out_root": out, "data_root": search_fmnist_root, **kwargs}
        with pytest.raises(BenchError, match=msg) as e:
            run_search(DATASET, MODEL, **settings)
        assert "\n" not in str(e.value)
    with pytest.raises(BenchError, match="needs a SAM"):
        run_search(DATASET, "resnet20", out_root=out, data_root=search_fmnist_root)
    assert not any(out.iterdir())


def test_config_object_and_wall_time_of_every_segment(
    tmp_path: Path, search_fmnist_root: Path, search_supernet_runs: Path
) -> None:
    """A search as one SearchConfig; stopped and resumed, result.json's wall time is the
    supernet's plus every search segment's (not the last segment's alone)."""
    out = _runs(tmp_path, search_supernet_runs)
    fields = {k: v for k, v in TINY.items() if k not in ("log", "progress")}
    config = SearchConfig(
        DATASET, MODEL, out_root=out, data_root=search_fmnist_root, iters=4, budget=12, **fields
    )
    pause = 1.0

    def slow(_msg: str) -> None:  # the first segment logs before its first checkpoint
        time.sleep(pause)

    none, run_dir = run_search(config, log=slow, progress=False, stop_after_steps=2)
    assert none is None
    first = torch.load(run_dir / "search_state.pt", weights_only=True)
    assert first["segments"] == 1 and first["elapsed_s"] >= pause
    t0 = time.perf_counter()
    path, again = _search(out, search_fmnist_root, iters=4, budget=12)  # the keyword form
    second = time.perf_counter() - t0
    assert again == run_dir and path == run_dir / "ticket.json"
    res = read_json(run_dir / "result.json")
    (sup,) = out.glob("supernet_*")
    assert res["supernet_wall_time_s"] == read_json(sup / "result.json")["wall_time_s"] > 0
    assert res["search_segments"] == 2 and res["resumed_from"] == 2
    assert first["elapsed_s"] < res["search_wall_time_s"] < first["elapsed_s"] + second
    assert res["wall_time_s"] == pytest.approx(
        res["supernet_wall_time_s"] + res["search_wall_time_s"]
    )
    with pytest.raises(TypeError, match="in the SearchConfig"):
        run_search(config, budget=3)


def test_supernet_draws_a_fresh_mask_every_step() -> None:
    net = build_model("resnet20-se", num_classes=10)
    sampler = MaskSampler(net, SupernetHParams())
    sampler.history = []
    torch.manual_seed(0)
    for step in range(400):
        sampler(step)
        assert net.mask == sampler.history[-1]
    bits = torch.tensor(sampler.history, dtype=torch.float64)
    assert 0.45 < float(bits.mean()) < 0.55 and len(set(sampler.history)) > 200
    torch.manual_seed(0)
    assert [sample_mask(9, SupernetHParams()) for _ in range(400)] == sampler.history
    # Density-first sampling covers every keep count, the extremes included.
    g = torch.Generator().manual_seed(0)
    counts = {sum(sample_mask(9, SupernetHParams(sampling="density"), g)) for _ in range(500)}
    assert counts == set(range(10))


def test_supernet_resume_is_exact(tmp_path: Path, search_fmnist_root: Path) -> None:
    splits = load_splits(DATASET, search_fmnist_root, image_size=16)
    preset = resolve_preset("short", DATASET, supernet={"epochs": 2, "batch_size": 64})
    args = (ModelConfig("resnet20", "se"), splits.train, splits.info, 10, preset.supernet)
    sampler = SupernetHParams(train_size=200)
    quiet = {"log": lambda _m: None, "progress": False}
    full = train_supernet(*args, sampler, tmp_path / "a", "cpu", **quiet)
    assert (
        train_supernet(*args, sampler, tmp_path / "b", "cpu", stop_after_epoch=1, **quiet) is None
    )
    resumed = train_supernet(*args, sampler, tmp_path / "b", "cpu", **quiet)
    assert full is not None and resumed is not None and full.result["train_images"] == 200
    a = torch.load(full.weights, weights_only=True)["model"]
    b = torch.load(resumed.weights, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_flags_reach_the_search(tmp_path: Path, search_fmnist_root: Path) -> None:
    parser = argparse.ArgumentParser()
    add_run_flags(parser)
    add_search_args(parser)
    save = tmp_path / "cli.json"
    argv = [DATASET, MODEL, "--data-root", str(search_fmnist_root), "--out", str(tmp_path)]
    argv += ["--strategy", "random", "--budget", "3", "--eval-subset", "20"]
    argv += ["--supernet-epochs", "1", "--supernet-train-size", "100", "--save-ticket", str(save)]
    args = parser.parse_args(argv)
    cmd_search(args)
    ticket = load_ticket(save)
    prov = ticket.provenance
    assert prov["strategy"] == "random" and prov["budget"] == {"evaluations": 3, "spent": 3.0}
    assert prov["split"]["scoring_images"] == 20 and prov["split"]["supernet_train_images"] == 100
    two_seeds = parser.parse_args([*argv, "--seeds", "0,1"])
    with pytest.raises(BenchError, match="one seed"):
        cmd_search(two_seeds)
