"""The benchmark harness (python -m benchmarks): paired per-round figures, their spread, and
the report a quick run writes. The benchmarks' speed-ups are tested where they live
(tests/test_search_evaluator.py, tests/test_crowd_density.py)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from benchmarks.__main__ import busy_cores, busy_warning, main, smoke_warning
from benchmarks.harness import (
    Comparison,
    Stat,
    Target,
    ratio,
    repeat_counts,
    summarize,
    time_rounds,
    verdict,
)
from benchmarks.processes import split_rounds


def test_stat_is_the_median_and_its_distribution_free_ci() -> None:
    # n = 7: P(B <= 0) = 1/128 <= 2.5% < P(B <= 1) = 8/128, so the CI is [x(1), x(7)].
    s7 = Stat.of([5.0, 1.0, 7.0, 3.0, 2.0, 6.0, 4.0])
    assert (s7.median, s7.lo, s7.hi, s7.n) == (4.0, 1.0, 7.0, 7)
    # n = 10: P(B <= 1) = 11/1024 <= 2.5% < P(B <= 2) = 56/1024, so [x(2), x(9)].
    s10 = Stat.of([float(v) for v in range(10, 0, -1)])
    assert (s10.median, s10.lo, s10.hi, s10.spread) == (5.5, 2.0, 9.0, 3.5)
    s3 = Stat.of([1.0, 2.0, 3.0])  # too few rounds for a 95% interval
    assert s3.lo is None and s3.interval == "n/a (3 rounds)" and s3.spread == float("inf")
    # The rounds' spread is every round, least to greatest, CI or not.
    assert (s10.least, s10.most, s3.rounds_range) == (1.0, 10.0, "1.000 to 3.000")


def test_a_miss_says_whether_the_ci_reaches_the_target() -> None:
    # n = 10: CI [x(2), x(9)] = [0.92, 1.01] for these values, median 0.965.
    s = Stat.of([0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 1.01, 1.05])
    assert (s.lo, s.hi) == (0.92, 1.01)
    assert verdict(Target(lo=0.95), s) == "yes"
    assert verdict(Target(lo=1.0), s) == "**no** (CI reaches it)"
    assert verdict(Target(lo=1.02), s) == "**no**"  # 1.05 is a round, not in the CI
    assert verdict(Target(0.98, 1.02), s) == "**no** (CI reaches it)"
    assert verdict(Target(hi=0.9), s) == "**no**" and verdict(None, s) == ""


def test_figures_are_paired_within_rounds() -> None:
    # The machine's speed drifts 5x over the rounds; "a" is twice as fast as "b" in each.
    slow = [1.0, 5.0, 2.0, 4.0, 3.0, 1.5, 2.5]
    rounds = [{"a": t, "b": 2 * t, "c": 2.0} for t in slow]
    comp = summarize("drift", rounds, [ratio("a / b", "a", "b", Target(lo=1.9)),
                                       ratio("a / c", "a", "c")])  # fmt: skip
    ab = comp.figures["a / b"]
    assert (ab.median, ab.lo, ab.hi) == (2.0, 2.0, 2.0) and comp.met("a / b")
    assert comp.figures["a / c"].spread > 0.5  # unpaired with the drift: the spread shows it
    assert comp.sides["a"].median == 2.5 and comp.met("a / c") is None


def test_sides_are_interleaved_in_shuffled_rounds() -> None:
    calls: list[str] = []
    sides = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    out, repeats = time_rounds(sides, rounds=6, warmup=2, min_time=0.0)
    assert repeats == {"a": 1, "b": 1, "c": 1} and len(out) == 6
    assert all(set(r) == set("abc") and min(r.values()) >= 0 for r in out)
    # 2 warm-up rounds, one calibration call each (min_time 0), then one call per round.
    assert Counter(calls) == {"a": 9, "b": 9, "c": 9}
    orders = {"".join(calls[i : i + 3]) for i in range(9, 27, 3)}
    assert all(sorted(o) == ["a", "b", "c"] for o in orders) and len(orders) > 1


def test_repeat_counts_are_shared_unless_sides_are_far_apart() -> None:
    # 50 ms: the 1 ms side needs 50 calls; 50 calls of 2 ms or 3.9 ms last <= 4 x 50 ms.
    assert repeat_counts({"a": 0.001, "b": 0.002, "c": 0.0039}, 0.05) == dict.fromkeys("abc", 50)
    # Sides slower than min_time: one call each.
    assert repeat_counts({"a": 0.2, "b": 1.5}, 0.05) == {"a": 1, "b": 1}
    # 50 calls of 5 ms = 250 ms > 200 ms: each side its own count (ceil(50 / 5) = 10).
    assert repeat_counts({"a": 0.001, "b": 0.005}, 0.05) == {"a": 50, "b": 10}
    # 50 calls of a 1 s side: far over one call and 4 x min_time.
    assert repeat_counts({"a": 0.001, "b": 1.0}, 0.05) == {"a": 50, "b": 1}


def test_fast_sides_are_repeated_alike_to_last_min_time() -> None:
    calls = Counter()
    sides = {k: (lambda k=k, t=t: (calls.update([k]), time.sleep(t))) for k, t in
             (("fast", 0.001), ("slower", 0.002))}  # fmt: skip
    out, repeats = time_rounds(sides, rounds=2, warmup=1, min_time=0.02)
    n = repeats["fast"]
    # Calibrated after warm-up: the same count for both sides, long enough for "fast".
    assert repeats == {"fast": n, "slower": n} and 3 < n <= 20
    assert all(min(r.values()) >= 0.001 for r in out)  # seconds per call, not per round
    assert min(calls.values()) > 2 * n  # 2 rounds of n calls, after warm-up and calibration


@pytest.mark.parametrize("argv, says", [
    (["core", "nosuch"], "'nosuch'"),
    (["core", "--min-time", "-0.1"], "--min-time -0.1"),
    (["core", "--min-time", "inf"], "--min-time inf"),
])  # fmt: skip
def test_bad_arguments_are_refused_in_one_line(tmp_path: Path, capsys, argv, says) -> None:
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and says in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_a_busy_machine_is_said_in_the_report() -> None:
    # Where the busy cores were measured they decide: a load average left by a run that
    # just ended does not count.
    quiet = {"busy_cores_start": 0.1, "load_average_start": [1.9, 1.0, 1.0]}
    assert busy_warning({**quiet, "cores_available": 2}) == ""
    busy = {"busy_cores_start": 1.2, "load_average_start": [0.2, 0.1, 0.1]}
    warning = busy_warning({**busy, "cores_available": 2})
    assert warning.startswith("Busy machine: 1.2 cores busy at start on 2 cores;")
    # Elsewhere (no /proc/stat) the load average.
    assert busy_warning({"load_average_start": [0.4, 2.0, 2.0], "cores_available": 2}) == ""
    warning = busy_warning({"load_average_start": [1.5, 0.1, 0.1], "cores_available": 2})
    assert warning.startswith("Busy machine: load average 1.50 at start on 2 cores;")


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="no /proc/stat on this system")
def test_busy_cores_reads_proc_stat() -> None:
    busy = busy_cores(0.05)
    assert busy is not None and 0.0 <= busy <= (os.cpu_count() or 1)


def _report(out: Path) -> tuple[dict, str, Path]:
    (run,) = [d for d in out.iterdir() if (d / "report.json").is_file()]
    return json.loads((run / "report.json").read_text()), (run / "report.md").read_text(), run


def test_quick_run_writes_json_and_markdown(tmp_path: Path, capsys) -> None:
    assert main(["density", "core", "--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    report, md, run = _report(tmp_path)
    m = report["machine"]
    for key in ("cpu_model", "cpu_count", "cores_available", "threads", "torch", "device"):
        assert m[key] not in (None, "")
    assert m["threads"] == 1 and report["mode"] == "quick" and report["wall_s"] > 0
    assert sorted(report["benchmarks"]) == ["core", "density"]
    for res in report["benchmarks"].values():
        assert res["status"] == "ok" and res["comparisons"] and res["wall_s"] > 0
        for comp in res["comparisons"]:
            assert comp["rounds"] == 3 and len(comp["sides_s"]) >= 2
            assert comp["min_time_s"] == 0.02 and set(comp["repeats"]) == set(comp["sides_s"])
            assert all(isinstance(n, int) and n >= 1 for n in comp["repeats"].values())
            for fig in comp["figures"].values():
                assert {"median", "lo", "hi", "n", "target", "met"} <= set(fig)
    density = report["benchmarks"]["density"]["comparisons"][0]
    assert density["info"]["max_abs_diff_rel"] < 1e-6  # equal output, checked
    head = "| case | figure | median | spread (rounds) | 95% CI of median | rounds | calls/round |"
    assert head in md
    assert m["cpu_model"] in md and "at least 0.02 s" in md and report["min_time_s"] == 0.02
    assert "**Smoke run (3 rounds): these figures show that the benchmarks run" in md
    # Batch-1 inference of the four core networks: one count for all (speeds within 4x).
    core = report["benchmarks"]["core"]["comparisons"][0]
    assert len(set(core["repeats"].values())) == 1
    assert "Part B, 20 heads" in md and "overhead removed" in md
    assert "resnet20-se b1 32px, 1 thread |" in md  # (--threads 1: b8 too)
    assert (run / "density_growth.png").is_file()
    assert "report: " in capsys.readouterr().out
    # The report read back by compare: every figure shared, none with a CI in 3 rounds.
    n = sum(len(c["figures"]) for r in report["benchmarks"].values() for c in r["comparisons"])
    assert main(["compare", str(run / "report.json"), str(run / "report.json")]) == 0
    tally = (
        f"within spread: {n} of {n}; within CI: 0 ({n} without a CI); one way only: 0; "
        "CIs overlap: 0; only in A: 0, only in B: 0"
    )
    assert tally in capsys.readouterr().out


@pytest.mark.slow
def test_every_benchmark_runs_quick(tmp_path: Path, search_fmnist_root: Path) -> None:
    argv = ["--quick", "--threads", "1", "--out", str(tmp_path / "r"),
            "--data-root", str(search_fmnist_root)]  # fmt: skip
    assert main(argv) == 0
    report, md, run = _report(tmp_path / "r")
    statuses = {name: r["status"] for name, r in report["benchmarks"].items()}
    assert statuses.pop("cuda") == ("ok" if torch.cuda.is_available() else "skipped")
    assert list(statuses.values()) == ["ok"] * 6
    for name in ("search_growth.png", "density_growth.png"):
        assert (run / name).is_file()
    assert "Evaluations to reach the true top 1%" in md


def _fig(median: float, lo: float | None, hi: float | None, n: int = 9,
         spread: tuple[float, float] | None = None) -> dict:  # fmt: skip
    least, most = spread or (lo, hi)
    return {"median": median, "lo": lo, "hi": hi, "n": n, "least": least, "most": most,
            "target": None, "met": None}  # fmt: skip


def _write(path: Path, benchmarks: dict) -> Path:
    path.write_text(json.dumps({"started": "t", "mode": "default", "rounds": 9,
                                "benchmarks": benchmarks}))  # fmt: skip
    return path


def test_compare_says_which_figures_agree(tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a.json", {
        "core": {"comparisons": [{"case": "c1", "figures": {
            "x": _fig(1.00, 0.95, 1.05), "y": _fig(2.0, 1.9, 2.1), "w": _fig(3.0, 2.0, 4.0),
            "only A": _fig(1.0, 0.5, 1.5)}}]},
        "density": {"comparisons": [{"case": "d1", "figures": {"z": _fig(100.0, 90.0, 110.0)}}]},
    })  # fmt: skip
    b = _write(tmp_path / "b.json", {
        "core": {"comparisons": [{"case": "c1", "figures": {
            "x": _fig(1.04, 1.00, 1.10), "y": _fig(2.2, 2.15, 2.3),
            "w": _fig(3.1, None, None, 3, spread=(2.9, 3.3))}}]},
        "density": {"comparisons": [{"case": "d1", "figures": {"z": _fig(105.0, 104.0, 106.0)}}]},
    })  # fmt: skip
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    cells = [[c.strip() for c in line.strip(" |").split("|")] for line in out.splitlines()
             if line.startswith(("| core", "| density"))]  # fmt: skip
    rows = {c[2]: c[5:] for c in cells}
    # Spreads here equal the CIs, except w's (B: 2.9 to 3.3; A's 2 to 4).
    # x: 1.00 in [1.00, 1.10] (bound included), 1.04 in [0.95, 1.05]: agree.
    assert rows["x"] == ["yes", "yes", "yes", "yes", "yes"]
    # y: 2.0 not in [2.15, 2.3], 2.2 not in [1.9, 2.1].
    assert rows["y"] == ["**no**", "no", "no", "**no**", "no"]
    # z: 100 not in [104, 106]; 105 in [90, 110]: one way only, no agreement.
    assert rows["z"] == ["**no**", "no", "yes", "**no**", "yes"]
    # w: B ran 3 rounds, no CI: A's median cannot be placed in it, but 3.0 lies in B's
    # spread and 3.1 in A's: within spread.
    assert rows["w"] == ["yes", "n/a", "yes", "**no**", "n/a"]
    tally = "within spread: 2 of 4; within CI: 1 (1 without a CI); one way only: 2; "
    assert f"{tally}CIs overlap: 2; only in A: 1, only in B: 0" in out
    assert "1.000 [0.950 to 1.050] (0.950 to 1.050)" in out
    assert "3.100 [n/a (3 rounds)] (2.900 to 3.300)" in out


@pytest.mark.parametrize("text, says", [
    (None, "cannot read"),
    ("{not json", "not JSON"),
    ('{"runs": []}', "'benchmarks' object"),
    ('{"benchmarks": {"core": {"comparisons": [{"case": "c", "figures": {"x": {"median": 1}}}]}}}',
     "benchmarks.core.comparisons[0]"),
])  # fmt: skip
def test_compare_refuses_a_bad_report_in_one_line(tmp_path: Path, capsys, text, says) -> None:
    good = _write(tmp_path / "good.json", {})
    bad = tmp_path / "bad.json"
    if text is not None:
        bad.write_text(text)
    assert main(["compare", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and str(bad) in err and says in err and "Traceback" not in err
    assert captured.out == ""


def test_decode_benchmark_runs_alone_and_reports_its_ratio(tmp_path: Path) -> None:
    assert main(["decode", "--quick", "--threads", "1", "--out", str(tmp_path)]) == 0
    report, md, _ = _report(tmp_path)
    assert list(report["benchmarks"]) == ["decode"]
    inputs, whole = report["benchmarks"]["decode"]["comparisons"]
    assert inputs["info"]["bit_equal"] and whole["info"]["equal_scores"]
    fig = inputs["figures"]["cache / decode"]
    assert isinstance(fig["median"], float) and fig["median"] > 0 and fig["target"]
    assert isinstance(whole["figures"]["cache / decode"]["median"], float)
    assert "| input path, 8 images | cache / decode |" in md


def test_rounds_are_dealt_to_processes() -> None:
    assert split_rounds(9, 3) == [3, 3, 3]
    assert split_rounds(10, 3) == [4, 3, 3]
    assert split_rounds(2, 3) == [1, 1]  # never an empty process


def test_pooled_spread_holds_what_differs_between_processes() -> None:
    # Process A measures a/b near 1.0, process B near 1.1: within each the spread is tiny.
    fig = [ratio("a / b", "a", "b", Target(lo=1.0))]
    a = summarize("c", [{"a": 1.0, "b": r} for r in (1.0, 1.01, 0.99)], fig, repeats={"a": 2})
    b = summarize("c", [{"a": 1.0, "b": r} for r in (1.1, 1.11, 1.09)], fig, repeats={"a": 3})
    pooled = Comparison.pooled([a, b])
    # Sorted: 0.99 1.0 1.01 1.09 1.1 1.11; median (1.01 + 1.09) / 2; n = 6: CI [x(1), x(6)].
    s = pooled.figures["a / b"]
    assert (s.median, s.lo, s.hi, s.n) == (pytest.approx(1.05), 0.99, 1.11, 6)
    assert pooled.rounds == 6 and pooled.values["a / b"] == [1.0, 1.01, 0.99, 1.1, 1.11, 1.09]
    assert pooled.info["repeats_per_process"] == [{"a": 2}, {"a": 3}] and pooled.met("a / b")
    # What a report stores reads back the same, per-round values and target included.
    again = Comparison.from_dict(json.loads(json.dumps(pooled.to_dict())))
    assert again == pooled


def test_rounds_run_in_processes_are_pooled(tmp_path: Path, capsys) -> None:
    argv = ["density", "--quick", "--processes", "2", "--rounds", "6", "--threads", "1",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    report, md, run = _report(tmp_path)
    assert report["processes"] == 2 and "ran in 2 processes" in md
    children = [json.loads(p.read_text()) for p in sorted(run.glob("processes/p*/*/report.json"))]
    assert [c["rounds"] for c in children] == [3, 3]
    for i, comp in enumerate(report["benchmarks"]["density"]["comparisons"]):
        parts = [c["benchmarks"]["density"]["comparisons"][i] for c in children]
        for name, fig in comp["figures"].items():
            assert fig["values"] == [v for p in parts for v in p["figures"][name]["values"]]
            assert fig["n"] == 6 and fig["lo"] is not None  # 6 rounds: a CI, 3 had none
    assert (run / "density_growth.png").is_file() and "![density_growth]" in md


def test_exhaustive_table_is_kept_beside_the_supernet(
    tmp_path: Path, search_fmnist_root: Path
) -> None:
    import torch
    from torch.utils.data import Subset

    from bench.data.datasets import load_splits
    from bench.models.resnet import build_model
    from bench.search.hparams import SearchHParams
    from bench.search.supernet import SupernetRun
    from benchmarks.harness import Session
    from benchmarks.search import exhaustive

    heldout = load_splits("fashion-mnist", search_fmnist_root, image_size=16).heldout
    torch.manual_seed(0)
    net = build_model("resnet20-se", num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "latest.pt")
    sup = SupernetRun(tmp_path, tmp_path / "latest.pt", {})
    s = Session("search", rounds=1, warmup=0, out=tmp_path / "r", echo=lambda _m: None)
    hp = SearchHParams()
    first = exhaustive(s, sup, net, Subset(heldout, list(range(8))), hp)
    assert len(first) == 512 and len(list(tmp_path.glob("exhaustive-*.json"))) == 1
    assert "scored on 8 images" in s.notes[-1] and "read from" not in s.notes[-1]
    # Read back, not scored again: a network with other weights still gets the kept table.
    other = build_model("resnet20-se", num_classes=10).eval()
    assert exhaustive(s, sup, other, Subset(heldout, list(range(8))), hp) == first
    assert "read from" in s.notes[-1]
    # Other scoring images (or other weights in the file): a new table.
    exhaustive(s, sup, net, Subset(heldout, list(range(1, 9))), hp)
    assert len(list(tmp_path.glob("exhaustive-*.json"))) == 2 and "read from" not in s.notes[-1]


def test_one_thread_cases_leave_the_thread_count_as_it_was() -> None:
    import torch

    from bench.search.loop import one_thread
    from benchmarks.core import single_threaded

    assert single_threaded(1, 32) and not single_threaded(1, 224)
    assert not single_threaded(64, 32)
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_a_run_too_short_to_measure_says_so() -> None:
    assert smoke_warning({"rounds": 9, "warmup": 1}) == ""
    assert smoke_warning({"rounds": 7, "warmup": 1}) == ""
    assert "Smoke run (6 rounds)" in smoke_warning({"rounds": 6, "warmup": 1})
    assert "Smoke run (9 rounds" not in smoke_warning({"rounds": 9, "warmup": 0})
    assert "Smoke run (no warm-up)" in smoke_warning({"rounds": 9, "warmup": 0})
    assert "Smoke run (1 round, no warm-up)" in smoke_warning({"rounds": 1, "warmup": 0})
