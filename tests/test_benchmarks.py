"""The benchmark harness (python -m benchmarks): paired per-round figures, their spread, and
the report a quick run writes. The benchmarks' speed-ups are tested where they live
(tests/test_search_evaluator.py, tests/test_crowd_density.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.harness import Stat, Target, ratio, summarize, time_rounds


def test_stat_is_the_median_and_its_distribution_free_ci() -> None:
    # n = 7: P(B <= 0) = 1/128 <= 2.5% < P(B <= 1) = 8/128, so the CI is [x(1), x(7)].
    s7 = Stat.of([5.0, 1.0, 7.0, 3.0, 2.0, 6.0, 4.0])
    assert (s7.median, s7.lo, s7.hi, s7.n) == (4.0, 1.0, 7.0, 7)
    # n = 10: P(B <= 1) = 11/1024 <= 2.5% < P(B <= 2) = 56/1024, so [x(2), x(9)].
    s10 = Stat.of([float(v) for v in range(10, 0, -1)])
    assert (s10.median, s10.lo, s10.hi, s10.spread) == (5.5, 2.0, 9.0, 3.5)
    s3 = Stat.of([1.0, 2.0, 3.0])  # too few rounds for a 95% interval
    assert s3.lo is None and s3.interval == "n/a (3 rounds)" and s3.spread == float("inf")


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
    out = time_rounds(sides, rounds=6, warmup=2, min_time=0.0)
    assert len(out) == 6 and all(set(r) == set("abc") and min(r.values()) >= 0 for r in out)
    # 2 warm-up rounds, then one call per side per round.
    assert Counter(calls) == {"a": 8, "b": 8, "c": 8}
    orders = {"".join(calls[i : i + 3]) for i in range(6, 24, 3)}
    assert all(sorted(o) == ["a", "b", "c"] for o in orders) and len(orders) > 1


def test_fast_sides_are_repeated_to_last_min_time() -> None:
    calls = Counter()
    sides = {"fast": lambda: calls.update(["fast"])}
    time_rounds(sides, rounds=2, warmup=0, min_time=0.01)
    assert calls["fast"] > 3  # one timed call, then each round calls it back to back


def test_unknown_benchmark_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["core", "nosuch", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'nosuch'" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing written


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
            for fig in comp["figures"].values():
                assert {"median", "lo", "hi", "n", "target", "met"} <= set(fig)
    density = report["benchmarks"]["density"]["comparisons"][0]
    assert density["info"]["max_abs_diff_rel"] < 1e-6  # equal output, checked
    assert "| case | figure | median | 95% CI |" in md and m["cpu_model"] in md
    assert "Part B, 20 heads" in md and "overhead removed" in md
    assert (run / "density_growth.png").is_file()
    assert "report: " in capsys.readouterr().out


@pytest.mark.slow
def test_every_benchmark_runs_quick(tmp_path: Path, search_fmnist_root: Path) -> None:
    argv = ["--quick", "--threads", "1", "--out", str(tmp_path / "r"),
            "--data-root", str(search_fmnist_root)]  # fmt: skip
    assert main(argv) == 0
    report, md, run = _report(tmp_path / "r")
    assert [r["status"] for r in report["benchmarks"].values()] == ["ok"] * 5
    for name in ("search_growth.png", "density_growth.png"):
        assert (run / name).is_file()
    assert "Evaluations to reach the true top 1%" in md
