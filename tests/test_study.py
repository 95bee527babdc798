"""Study files, the plan graph and the cell states (bench.study), without running a cell.

Bad study files must be refused with one line naming the key (exit 2, nothing written); the
shipped studies must plan on a fresh clone (no data); states are read from the files alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures_bad import expect_exit_2

from bench.cli.main import main
from bench.study.plan import parse_command
from bench.ticket.schema import make_ticket

REPO = Path(__file__).resolve().parent.parent
STUDIES = sorted((REPO / "studies").glob("*.toml"))


@pytest.fixture
def ticket_file(tmp_path: Path) -> Path:
    prov = {"kind": "published", "citation": "test", "source": "test"}
    ticket = make_ticket("r20-se-t", "resnet20", "se", [1, 0, 0, 1, 0, 1, 0, 0, 1], prov)
    return ticket.save(tmp_path / "t.json")


def tiny_study(ticket: Path, out: Path, extra: str = "") -> str:
    return f"""
seeds = [0, 1]
controls = ["full", "none"]
tickets = ["{ticket}"]
out = "{out}"
[pretraining]
dataset = "fashion-mnist"
preset = "short"
flags = {{ epochs = 1, batch-size = 32 }}
[[transfer]]
task = "crowd_counting"
datasets = ["shanghaitech-b"]
flags = {{ iters = 2 }}
{extra}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


BAD = [
    ("unknown-key", "seeds = [0, 1]", "seeds = [0, 1]\nseed = 1", ("seed", "unknown key")),
    ("seeds-empty", "seeds = [0, 1]", "seeds = []", ("seeds",)),
    ("seeds-text", "seeds = [0, 1]", 'seeds = ["a"]', ("seeds",)),
    ("controls", '"full", "none"]', '"fulll"]', ("controls[0]", "fulll")),
    ("dataset", 'dataset = "fashion-mnist"', 'dataset = "mnist"', ("pretraining.dataset",)),
    ("preset", 'preset = "short"', 'preset = "nosuch"', ("pretraining", "nosuch")),
    ("flag", "epochs = 1,", "nosuch = 1, epochs = 1,", ("pretraining", "--nosuch")),
    ("flag-value", "epochs = 1,", "epochs = 0,", ("pretraining", "--epochs")),
    ("task", 'task = "crowd_counting"', 'task = "counting"', ("transfer[0].task",)),
    ("opt", "iters = 2 }", "iters = 2 }\nopt = { nosuchkey = 1 }", ("transfer[0]", "nosuchkey")),
    (
        "decoders",
        "iters = 2 }",
        'iters = 2 }\ndecoders = ["pspnet"]',
        ("transfer[0].decoders", "segmentation"),
    ),
    ("launcher", "iters = 2 }", 'iters = 2 }\n[launcher]\nname = "pbs"', ("launcher.name",)),
    ("sbatch", "iters = 2 }", 'iters = 2 }\n[launcher]\nsbatch = ["qos"]', ("launcher.sbatch[0]",)),
    (
        "tolerance",
        "iters = 2 }",
        "iters = 2 }\n[leaderboard]\ntolerance = -1",
        ("leaderboard.tolerance", ">= 0"),
    ),
    (
        "tolerance-text",
        "iters = 2 }",
        'iters = 2 }\n[leaderboard]\ntolerance = "1%"',
        ("tolerance",),
    ),  # noqa: E501
    ("not-toml", "seeds = [0, 1]", "seeds = [0, 1", ("not TOML",)),
]


@pytest.mark.parametrize(("name", "old", "new", "needles"), BAD, ids=[b[0] for b in BAD])
def test_bad_study_file_is_one_line_exit_2(tmp_path, capsys, ticket_file, name, old, new, needles):
    out = tmp_path / "runs"
    text = tiny_study(ticket_file, out)
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    line = expect_exit_2(["study", "plan", str(path)], capsys, *needles)
    assert str(path) in line
    assert not out.exists()  # nothing written


def test_leaderboard_tolerance_reaches_its_command(tmp_path, capsys, ticket_file):
    lb = "[leaderboard]\ntolerance = 0.5"
    path = _write(tmp_path, tiny_study(ticket_file, tmp_path / "runs", lb))
    assert main(["study", "plan", str(path), "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)["cells"][-1]
    assert board["argv"][-2:] == ["--tolerance", "0.5"]
    path.write_text(tiny_study(ticket_file, tmp_path / "runs"))
    assert main(["study", "plan", str(path), "--format", "json"]) == 0
    assert "--tolerance" not in json.loads(capsys.readouterr().out)["cells"][-1]["argv"]


def test_missing_ticket_names_the_shipped_ones_and_what_makes_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    shipped = sorted(p.stem for p in (REPO / "tickets").glob("*.json"))
    argv = ["transfer", "--ticket", "tickets/r50_se.json", "--task", "crowd_counting",
            "--pretrained", "none", "--out", str(tmp_path)]  # fmt: skip
    if (REPO / "tickets" / "r50_se.json").exists():
        pytest.skip("tickets/r50_se.json was made here")
    line = expect_exit_2(argv, capsys, "tickets/r50_se.json", *shipped)
    assert "bench study run studies/r50-se.toml" in line
    study = _write(tmp_path, 'seeds = [0]\ntickets = ["tickets/nosuch.json"]')
    expect_exit_2(["study", "plan", str(study)], capsys, "tickets[0]", *shipped, "bench search")


@pytest.mark.parametrize("study", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_studies_plan_on_a_fresh_clone(study, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TICKETBENCH_DATA", str(tmp_path / "no-data"))
    assert main(["study", "plan", str(study.relative_to(REPO)), "--format", "json",
                 "--out", str(tmp_path / "runs")]) == 0  # fmt: skip
    plan = json.loads(capsys.readouterr().out)
    cells = plan["cells"]
    ids = [c["id"] for c in cells]
    assert ids[-1] == "leaderboard" and set(cells[-1]["deps"]) == set(ids[:-1])
    for c in cells:
        assert c["argv"][0] == "bench" and c["state"] in ("ready", "waiting")
        assert set(c["deps"]) <= set(ids[: ids.index(c["id"])])  # dependencies come first
    # One pretraining cell per arm x seed: ean-r50 2 tickets x 3 arms x 3 seeds + 2 x 4 x 3
    # transfer + leaderboard; r50-se search + 9 + 6 + 1; cifar100-r164 search + 4 arms x 3 + 1;
    # demo data + search + 9 + 3 seeds x (ShanghaiTech B, Cityscapes) + 1.
    expected = {"ean-r50": 43, "r50-se": 17, "cifar100-r164": 14, "demo": 18}
    assert len(cells) == expected[study.stem]
    assert not (tmp_path / "runs").exists()


def test_demo_study_is_the_demo(tmp_path):
    """studies/demo.toml runs what bench.study.demo names: dataset, model, preset, tasks, limit."""
    from bench.study import demo
    from bench.study.plan import build_plan
    from bench.study.schema import load_study

    study = load_study(REPO / "studies" / "demo.toml", tmp_path)
    assert study.search is not None and study.pretraining is not None
    assert (study.search.dataset, study.search.model, study.search.preset) == (
        demo.DATASET, demo.MODEL, demo.PRESET)  # fmt: skip
    assert (study.pretraining.dataset, study.pretraining.preset) == (demo.DATASET, demo.PRESET)
    assert tuple(t.task for t in study.transfer) == demo.TRANSFER_TASKS
    assert study.controls == ("full", "none") and study.seeds == (0, 1, 2)
    plan = build_plan(study)
    train = [c for c in plan.cells if c.kind == "train"]
    assert [c.argv[c.argv.index("--seeds") + 1] for c in train] == [s for s in "012" for _ in "tfn"]
    assert [c.argv[c.argv.index("--arm") + 1] for c in train] == ["ticket", "full", "none"] * 3
    assert all(c.deps == ("search",) for c in train)


def test_plan_graph_and_states_from_files(tmp_path, ticket_file):
    from bench.engine.rundir import hold_run, release_run
    from bench.study.plan import build_plan
    from bench.study.schema import load_study
    from bench.study.state import EXIT_FILE, cell_dir, plan_states
    from bench.util.io import atomic_write_json

    study = load_study(_write(tmp_path, tiny_study(ticket_file, tmp_path / "runs")))
    plan = build_plan(study)
    by = plan.by_id
    arms = [f"train/t/s{s}/{a}" for s in (0, 1) for a in ("ticket", "full", "none")]
    assert [c.id for c in plan.cells] == [*arms, "transfer/t/crowd_counting/shanghaitech-b/s0",
        "transfer/t/crowd_counting/shanghaitech-b/s1", "leaderboard"]  # fmt: skip
    assert by["transfer/t/crowd_counting/shanghaitech-b/s1"].deps == tuple(arms[3:])
    assert "--arm" in by["train/t/s0/full"].argv and len(by["train/t/s0/full"].match.arms) == 1
    states = plan_states(plan)
    assert [states[c.id].state for c in plan.cells] == ["ready"] * 6 + ["waiting"] * 3
    # A cell whose lock a live process holds is running, named by that holder.
    hold_run(cell_dir(plan, by["train/t/s0/ticket"]))
    try:
        s = plan_states(plan)["train/t/s0/ticket"]
        assert s.state == "running" and f"pid {os.getpid()}" in s.detail
    finally:
        release_run(cell_dir(plan, by["train/t/s0/ticket"]))
    # A command that exited non-zero is failed; its dependents wait on it.
    cell = by["train/t/s1/none"]
    atomic_write_json(cell_dir(plan, cell) / EXIT_FILE,
                      {"rc": 2, "argv": list(cell.argv), "said": "bench: error: x"})  # fmt: skip
    states = plan_states(plan)
    assert states["train/t/s0/none"].state == "ready"
    assert (
        states["train/t/s1/none"].state == "failed" and "exit 2" in states["train/t/s1/none"].detail
    )
    assert states["transfer/t/crowd_counting/shanghaitech-b/s1"].state == "waiting"
    # An exit status of another command (the study file changed) is not this cell's.
    atomic_write_json(cell_dir(plan, cell) / EXIT_FILE, {"rc": 2, "argv": ["bench", "x"]})
    assert plan_states(plan)["train/t/s1/none"].state == "ready"


def test_train_work_is_epochs_times_images_of_every_arm(tmp_path, ticket_file):
    from bench.study.plan import build_plan
    from bench.study.schema import load_study

    text = tiny_study(ticket_file, tmp_path / "runs").replace("flags = {", "train_limit = 500\n"
                                                              "flags = {", 1)  # fmt: skip
    plan = build_plan(load_study(_write(tmp_path, text)))
    assert [plan.by_id[f"train/t/s0/{a}"].work for a in ("ticket", "full", "none")] == [500] * 3


def _transfer_work(tmp_path: Path, ticket: Path, table: str, launcher: str = "") -> dict:
    from bench.study.plan import build_plan
    from bench.study.schema import load_study

    text = f'seeds = [0]\ncontrols = ["full"]\ntickets = ["{ticket}"]\n{table}\n{launcher}'
    plan = build_plan(load_study(_write(tmp_path, text), tmp_path / "runs"))
    return {c.id.split("/", 2)[2]: (c.work, c.gpus) for c in plan.cells if c.kind == "transfer"}


def test_transfer_work_counts_official_splits_the_sample_and_iters(tmp_path, ticket_file):
    """Hand-worked: images of one arm x 2 arms (ticket, full)."""
    crowd = '[[transfer]]\ntask = "crowd_counting"\ndata_root = "{}"\n'
    # Official ShanghaiTech (no folder): CSRNet's 400 epochs x (train - 10% val) x 4 patches.
    work = _transfer_work(tmp_path, ticket_file, crowd.format(tmp_path / "none"))
    assert work["crowd_counting/shanghaitech-a/s0"] == (400 * (300 - 30) * 4 * 2, 0)
    assert work["crowd_counting/shanghaitech-b/s0"] == (400 * (400 - 40) * 4 * 2, 0)
    # The bundled sample on disk: 12 train tiles, 3 to validation, 2 crops, 8 epochs.
    from tasks.crowd_counting.sample import write_sample

    data = write_sample(tmp_path / "data")
    work = _transfer_work(tmp_path, ticket_file, crowd.format(data))
    assert work["crowd_counting/shanghaitech-b/s0"] == (8 * (12 - 3) * 2 * 2, 0)
    # --iters 2: 18 crops / batch 4 = 5 steps per epoch, so 1 epoch.
    work = _transfer_work(tmp_path, ticket_file, crowd.format(data) + "flags = { iters = 2 }")
    assert work["crowd_counting/shanghaitech-b/s0"] == (1 * 18 * 2, 0)
    # Segmentation: iterations x batch 2 per process x processes (mmseg's 4xb2, 40k).
    seg = '[[transfer]]\ntask = "segmentation"\ndata_root = "{}"\n'.format(tmp_path / "none")
    work = _transfer_work(tmp_path, ticket_file, seg, "[launcher]\ngpus_per_job = 4")
    assert work["segmentation/cityscapes/s0"] == (40_000 * 2 * 4 * 2, 4)


def test_batch_one_recipe_on_several_gpus_is_refused_unless_gpus_1(tmp_path, capsys, ticket_file):
    table = '[[transfer]]\ntask = "crowd_counting"\ndatasets = ["shanghaitech-a"]\n'
    text = f'seeds = [0]\ntickets = ["{ticket_file}"]\n{table}[launcher]\ngpus_per_job = 4'
    path = _write(tmp_path, text)
    expect_exit_2(["study", "plan", str(path)], capsys, "transfer[0]", "batch size 1", "gpus = 1")
    work = _transfer_work(tmp_path, ticket_file, table + "gpus = 1", "[launcher]\ngpus_per_job = 4")
    assert work["crowd_counting/shanghaitech-a/s0"][1] == 1


def test_engine_refuses_a_batch_smaller_than_its_processes():
    from bench.engine.hparams import TrainHParams
    from bench.engine.loop import training_data
    from bench.util.errors import BenchError

    info = type("Info", (), {"world_size": 4, "rank": 0})()
    with pytest.raises(BenchError, match="batch size 2 cannot be split over 4 processes"):
        training_data(list(range(8)), TrainHParams(batch_size=2), info, cuda=False)


def test_official_split_sizes_follow_the_datasets_protocols():
    from bench.data.datasets import DATASETS, HeldoutRule
    from bench.study.work import TRAIN_SPLITS

    for name, (_, _, rule) in TRAIN_SPLITS.items():
        assert DATASETS.get(name).heldout == HeldoutRule.parse(rule), name


def test_demo_study_commands_make_the_demos_runs(tmp_path):
    """Each command of studies/demo.toml resolves to the very settings bench.study.demo passes
    (so the same run directories, records and leaderboard)."""
    from dataclasses import replace

    from bench.cli.commands.search import search_configs
    from bench.cli.commands.train import check as train_check
    from bench.cli.commands.train import data_options
    from bench.cli.commands.transfer import check as transfer_check
    from bench.engine import PRESETS
    from bench.runs.classify import DataOptions
    from bench.search.config import SearchConfig
    from bench.study import demo
    from bench.study.plan import build_plan, parse_command
    from bench.study.schema import load_study

    plan = build_plan(load_study(REPO / "studies" / "demo.toml", tmp_path))
    search = parse_command(plan.by_id["search"].argv, "search")
    mine = search_configs(search)[0].replace(save_ticket=None)
    theirs = SearchConfig(demo.DATASET, demo.MODEL, preset=demo.PRESET, seed=0, out_root=tmp_path)
    assert mine == theirs
    for cell in (c for c in plan.cells if c.kind == "train"):
        args = parse_command(cell.argv, cell.id)
        seed = int(cell.argv[cell.argv.index("--seeds") + 1])
        _, base = train_check(args)
        flags = {"batch_size": 64, "eval_limit": 1000, "eval_every": 3}
        assert replace(base, seed=seed) == replace(PRESETS.get(demo.PRESET), seed=seed, **flags)
        assert data_options(args) == DataOptions(train_limit=2000)
    seg = next(c for c in plan.cells if c.kind == "transfer" and "segmentation" in c.argv)
    options = transfer_check(parse_command(seg.argv, seg.id))
    assert options == {"segmentation": {"log_level": "ERROR"}}
    crowd = next(c for c in plan.cells if c.kind == "transfer" and "crowd_counting" in c.argv)
    assert transfer_check(parse_command(crowd.argv, crowd.id)) == {}


def test_slurm_settings_and_torchrun(tmp_path, ticket_file):
    """File settings, flags over them, the sbatch script submitit writes, torchrun argv."""
    from bench.cli.commands.study import launcher_of
    from bench.study.launch import make_executor
    from bench.study.plan import build_plan, launch_argv
    from bench.study.schema import load_study

    extra = '[launcher]\nname = "slurm"\npartition = "gpu"\ngpus_per_job = 4\ntime = 2880'
    text = tiny_study(ticket_file, tmp_path / "runs", extra).replace(
        "iters = 2 }", "iters = 2 }\ngpus = 1"
    )
    study = load_study(_write(tmp_path, text))
    args = parse_command(["bench", "study", "run", "x.toml", "--mem", "64G", "--sbatch=--qos=high",
                          "--account", "lab"], "flags")  # fmt: skip
    launcher = launcher_of(study, args)
    assert (launcher.partition, launcher.mem, launcher.account) == ("gpu", "64G", "lab")
    script = make_executor(study, launcher, tmp_path / "sub")._make_submission_file_text("cmd", "u")
    for line in ("--partition=gpu", "--gpus-per-node=4", "--time=2880", "--mem=64G",
                 "--account=lab", "--qos=high"):  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line
    cell = build_plan(study).by_id["train/t/s0/full"]
    argv = launch_argv(cell, "/venv/bin/bench", "/venv/bin/torchrun")
    assert argv[:6] == ["/venv/bin/torchrun", "--standalone", "--nproc-per-node=4", "-m",
                        "bench.cli.main", "train"]  # fmt: skip
    assert cell.command.startswith(
        "torchrun --standalone --nproc-per-node=4 -m bench.cli.main train "
    )
    crowd = build_plan(study).by_id["transfer/t/crowd_counting/shanghaitech-b/s0"]
    assert crowd.gpus == 1 and crowd.command.startswith("bench transfer ")  # its table's gpus


def test_bench_demo_seed_shifts_the_demo_study(tmp_path):
    from bench.cli.commands.demo import demo_study

    study = demo_study(tmp_path, seed=3)
    assert study.seeds == (3, 4, 5) and study.out == tmp_path
    assert study.search is not None and study.search.seed == 3
    assert study.search.ticket == f"{tmp_path}/tickets/resnet20-se-fashion-mnist-reinforce-s3.json"


def test_gpu_pool_lends_each_gpu_to_one_cell_at_a_time(monkeypatch):
    from bench.study.launch import GpuPool, local_gpu_ids

    pool = GpuPool([3, 5, 7])
    assert pool.take("a", 2) == (3, 5)
    assert pool.take("b", 2) is None  # one free: b waits
    assert pool.take("c", 1) == (7,)
    pool.give("a")
    assert pool.take("b", 2) == (3, 5) and pool.free == []
    assert pool.take("d", 0) == ()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 6")
    assert local_gpu_ids() == [2, 6]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_gpu_ids() == []
