"""Paired differences, their t-intervals and the verdicts, against oracles worked by hand
here (arithmetic spelled out; the t quantile from scipy, never from the code under test);
several output roots and the refusal of two records of one run; --tolerance."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
from fixtures_leaderboard import write_record_tree
from scipy.stats import t as student_t

from bench.cli.main import main
from bench.report.collect import collect
from bench.report.leaderboard import build, leaderboard
from bench.report.paired import (
    accuracy_verdict,
    cheaper_verdict,
    latency_verdict,
    paired_difference,
)
from bench.runs.records import iter_records, write_record
from bench.util.errors import BenchError

T2 = student_t.ppf(0.975, 2)  # 4.302..., 2 degrees of freedom (3 seeds)
T1 = student_t.ppf(0.975, 1)  # 12.706..., 1 degree of freedom (2 seeds)


def test_three_seeds_by_hand():
    ticket = {0: 76.0, 1: 77.5, 2: 75.9}
    full = {0: 76.4, 1: 76.9, 2: 76.2}
    # d = ticket - full per seed (higher is better): -0.4, +0.6, -0.3
    mean = (-0.4 + 0.6 - 0.3) / 3
    std = math.sqrt(((-0.4 - mean) ** 2 + (0.6 - mean) ** 2 + (-0.3 - mean) ** 2) / 2)
    half = T2 * std / math.sqrt(3)
    control_mean = (76.4 + 76.9 + 76.2) / 3
    p = paired_difference(ticket, full, higher_is_better=True)
    assert p.seeds == (0, 1, 2) and p.n == 3 and p.reason is None
    assert p.diff == pytest.approx(mean) and p.std == pytest.approx(std)
    assert (p.lo, p.hi) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert p.rel == pytest.approx(100 * mean / control_mean)
    assert p.rel_lo == pytest.approx(100 * (mean - half) / control_mean)
    assert p.rel_hi == pytest.approx(100 * (mean + half) / control_mean)
    assert std == pytest.approx(0.5507570547)  # the oracle itself, checked once more


def test_lower_is_better_flips_the_sign():
    # MAE: the ticket 10 12 11, full 11 11.5 12; d = -(ticket - full) = +1, -0.5, +1
    ticket, full = {0: 10.0, 1: 12.0, 2: 11.0}, {0: 11.0, 1: 11.5, 2: 12.0}
    mean = (1 - 0.5 + 1) / 3  # 0.5: the ticket errs less, so it is better
    std = math.sqrt(((1 - mean) ** 2 + (-0.5 - mean) ** 2 + (1 - mean) ** 2) / 2)
    p = paired_difference(ticket, full, higher_is_better=False)
    assert p.diff == pytest.approx(0.5) and p.std == pytest.approx(std)
    assert p.hi == pytest.approx(mean + T2 * std / math.sqrt(3))
    assert p.rel == pytest.approx(100 * 0.5 / ((11 + 11.5 + 12) / 3))
    # Read as higher-is-better the same numbers say the opposite.
    assert paired_difference(ticket, full, higher_is_better=True).diff == pytest.approx(-0.5)


def test_one_seed_gives_a_value_without_an_interval():
    p = paired_difference({0: 71.0, 4: 1.0}, {0: 70.0}, higher_is_better=True)
    assert p.seeds == (0,) and p.diff == 1.0 and p.rel == pytest.approx(100 / 70)
    assert math.isnan(p.std) and (p.lo, p.hi, p.rel_lo, p.rel_hi) == (None,) * 4
    assert p.reason == "1 shared seed (0): no interval (needs 2 or more)"
    assert accuracy_verdict(p, 1.0) == "undecided"
    none = paired_difference({1: 1.0}, {0: 1.0}, True)
    assert none.n == 0 and math.isnan(none.diff) and none.reason == "no shared seed"


def test_seeds_missing_from_one_arm_are_left_out():
    # full lacks seed 1: the pairs are seeds 0 and 2 only, d = +1, +3
    p = paired_difference({0: 5.0, 1: 100.0, 2: 7.0}, {0: 4.0, 2: 4.0}, higher_is_better=True)
    assert p.seeds == (0, 2) and p.diff == pytest.approx(2.0)
    std = math.sqrt(((1 - 2) ** 2 + (3 - 2) ** 2) / 1)
    assert p.std == pytest.approx(std) and p.hi == pytest.approx(2 + T1 * std / math.sqrt(2))


def test_swapping_ticket_and_full_negates_the_difference():
    a, b = {0: 76.0, 1: 77.5, 2: 75.9}, {0: 76.4, 1: 76.9, 2: 76.2}
    for hib in (True, False):
        ab, ba = paired_difference(a, b, hib), paired_difference(b, a, hib)
        assert ba.diff == pytest.approx(-ab.diff) and ba.std == pytest.approx(ab.std)
        assert (ba.lo, ba.hi) == (pytest.approx(-ab.hi), pytest.approx(-ab.lo))


def test_accuracy_verdict_at_each_side_of_the_tolerance():
    # none vs full on the fixture's cifar10: d = -2, -2.5, -3 (mean -2.5, std 0.5), full 93
    p = paired_difference({0: 90.0, 1: 90.5, 2: 91.0}, {0: 92.0, 1: 93.0, 2: 94.0}, True)
    half = T2 * 0.5 / math.sqrt(3)
    lo, hi = 100 * (-2.5 - half) / 93, 100 * (-2.5 + half) / 93  # -4.02%, -1.35%
    assert (p.rel_lo, p.rel_hi) == (pytest.approx(lo), pytest.approx(hi))
    eps = 1e-9
    assert accuracy_verdict(p, -hi - eps) == "loses"  # upper end below -tolerance
    assert accuracy_verdict(p, -hi + eps) == "undecided"
    assert accuracy_verdict(p, -lo - eps) == "undecided"
    assert accuracy_verdict(p, -lo + eps) == "keeps"  # lower end at or above -tolerance
    assert accuracy_verdict(p, -lo) == "keeps"


def test_cost_verdicts():
    assert cheaper_verdict(290_000, 300_000) == "cheaper"
    assert cheaper_verdict(300_000, 300_000) == "not cheaper"
    assert cheaper_verdict(None, 300_000) is None
    assert latency_verdict(0.85, 0.99) == "faster"
    assert latency_verdict(0.85, 1.0) == "undecided"  # the interval must lie below 1
    assert latency_verdict(1.01, 1.2) == "slower"
    assert latency_verdict(None, None) is None


# ---- several roots, conflicting records, --tolerance --------------------------------------
@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("records")
    write_record_tree(out)
    return out


def _split(tree: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The tree's records split over two roots by task (a grid split over clusters)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for path, _ in iter_records(tree):
        rel = path.relative_to(tree)
        dest = (b if rel.parts[1] == "segmentation" else a) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    return a, b


def _numbers(rows: list[dict]) -> list[dict]:
    """Every column but the verdicts, the tolerance and where a record came from."""
    drop = {"record", "tolerance_pct"}
    return [{k: v for k, v in r.items() if k not in drop and "verdict" not in k} for r in rows]


def test_several_roots_give_the_one_root_leaderboard(tree, tmp_path):
    a, b = _split(tree, tmp_path)
    whole, split = build(tree), build(a, b)
    assert _numbers(split.summary) == _numbers(whole.summary)
    assert split.ranks == whole.ranks
    assert {r["record"].startswith(str(b)) for r in split.runs if r["task"] == "segmentation"} == {
        True
    }
    # The same record under two roots counts once.
    shutil.copytree(a / "records", b / "records", dirs_exist_ok=True)
    assert len(collect(a, b)) == len(collect(tree))


def test_two_different_records_of_one_run_are_refused(tree, tmp_path, capsys):
    a, b = _split(tree, tmp_path)
    path, rec = next((p, r) for p, r in iter_records(a) if r["provenance"]["seed"] == 1)
    rec["result"]["value"] += 0.25
    copy = write_record(b, rec)
    with pytest.raises(BenchError, match="a different record of the same run as"):
        collect(a, b)
    code = main(["leaderboard", "--out", str(a), "--records-from", str(b)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(copy) in err[0] and str(path) in err[0]
    assert not (a / "leaderboards").exists()  # nothing half-written


def test_tolerance_changes_verdicts_and_caption_not_numbers(tree, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(tree / "records", out / "records")
    tables = {}
    for tol in ("1", "5"):
        assert main(["leaderboard", "--out", str(out), "--format", "md", "--tolerance", tol]) == 0
        text = capsys.readouterr().out
        with open(out / "leaderboards" / "summary.csv", newline="") as f:
            tables[tol] = (text, list(csv.DictReader(f)))
    (md1, rows1), (md5, rows5) = tables["1"], tables["5"]
    assert _numbers(rows1) == _numbers(rows5)
    assert "lower end at or above -1%" in md1 and "lower end at or above -5%" in md5
    verdicts = {
        tol: {(r["dataset"], r["ticket"]): r["verdict_accuracy"] for r in rows}
        for tol, (_, rows) in tables.items()
    }
    # none vs full on cifar10 is [-4.02%, -1.35%]: loses at 1%, keeps at 5%
    assert verdicts["1"][("cifar10", "r20-se-none")] == "loses"
    assert verdicts["5"][("cifar10", "r20-se-none")] == "keeps"
    assert main(["leaderboard", "--out", str(out), "--tolerance", "-1"]) == 2
    assert "expected a percentage >= 0" in capsys.readouterr().err


def test_a_seed_without_its_control_is_footnoted(tree, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tree / "records", out / "records")
    for path, rec in iter_records(out):
        ident, setting = rec["identity"], rec["setting"]
        if (setting["dataset"], ident["baseline"], rec["provenance"]["seed"]) == (
            "cifar10",
            "full",
            2,
        ):
            path.unlink()
    lb = build(out)
    (row,) = [r for r in lb.summary if r["dataset"] == "cifar10" and r["baseline"] is None]
    # ticket 92 92.5 (93) vs full 92 93: d = 0, -0.5 over seeds 0 1
    assert (row["vs_full_n"], row["vs_full_seeds"]) == (2, "0 1")
    assert row["vs_full_diff"] == pytest.approx(-0.25)
    assert row["vs_full_reason"] == "seed 2: no finished full control run"
    text, _ = leaderboard(out, fmt="md", dataset="cifar10")
    line = next(ln for ln in text.splitlines() if "| r20_se_ticket |" in ln)
    assert "| -0.27 [-3.70, +3.16] [2] |" in line  # -0.25 / 92.5: seeds 0 1 of full only
    assert "[2] classification/cifar10 (linear) r20_se_ticket: seed 2: no finished full" in text
