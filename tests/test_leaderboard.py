"""`bench leaderboard`: a hand-made record tree collected into hand-checked numbers, the
share of gain and its NaN rule, exports, plots, and `transfer --task all`. The paired
differences, intervals and verdicts have their own oracles in tests/test_report_paired.py."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
from fixtures_leaderboard import DEVICE, tickets, write_record_tree

from bench.cost.table import measure_cost
from bench.models.slots import build_ticket_model
from bench.report.collect import collect
from bench.report.export import caption, latex_escape
from bench.report.leaderboard import build, leaderboard
from bench.report.plots import draw_masks, forest, metric_vs_latency, pareto_front, plot_leaderboard
from bench.report.score import gain_share
from bench.runs.records import iter_records, make_record, write_record
from bench.runs.transfer import TransferRun, TransferTask
from bench.runs.transfer_all import RunOptions, report, summary_table, transfer_all
from bench.util.errors import BenchError
from bench.util.registry import Registry

N_RUNS = 3 * 3 + 3 + 3 * 2 + 3 * 2 + 1 + 2  # finished cells above, then 3 failed runs


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The record tree of fixtures_leaderboard, collected once (read-only for tests)."""
    out = tmp_path_factory.mktemp("records")
    write_record_tree(out)
    leaderboard(out)
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summary_row(out: Path, dataset: str, ticket: str) -> dict[str, str]:
    rows = read_csv(out / "leaderboards" / "summary.csv")
    (row,) = [r for r in rows if r["dataset"] == dataset and r["ticket"] == ticket]
    return row


def writable_copy(tree: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(tree / "records", out / "records")
    return out


# ---- collection and summary --------------------------------------------------------------
def test_every_run_has_a_row_failed_ones_included(tree):
    runs = collect(tree)
    assert len(runs) == N_RUNS
    failed = [r for r in runs if r["status"] == "failed"]
    assert [(r["dataset"], r["ticket"], r["seed"]) for r in failed] == [
        ("cifar10", "r20_se_ticket", 3),
        ("cityscapes", "r20-se-random", 0),
        ("cityscapes", "r20-se-random", 1),
    ]
    per_task = {t: read_csv(tree / "leaderboards" / f"{t}.csv") for t in ("classification",)}
    rows = per_task["classification"]
    assert len(rows) == 9 + 3 + 1
    (bad,) = [r for r in rows if r["status"] == "failed"]
    assert bad["value"] == "" and bad["reason"] == "RuntimeError: CUDA out of memory"
    assert bad["record"] == (
        f"records/classification/cifar10/r20_se_ticket__"
        f"{tickets()['ticket'].checksum.split(':')[1]}__linear__test__seed3.json"
    )
    ok = next(r for r in rows if r["ticket"] == "r20-se-full" and r["seed"] == "1")
    assert ok["value"] == "93.0" and ok["extra_top5"] == "98.0"
    assert ok["params_total"] == "300000" and ok["input_shape"] == "1x3x32x32"
    assert ok["latency_device"] == DEVICE and ok["stages"] == "111|111|111"
    assert ok["run_dir"].endswith("classification_cifar10_full_1")


def test_summary_numbers_are_the_hand_checked_ones(tree):
    t = summary_row(tree, "cifar10", "r20_se_ticket")
    # seeds 0-2: 92, 92.5, 93 -> mean 92.5, sample std 0.5; seed 3 failed
    assert (t["n"], t["n_failed"], t["seeds"]) == ("3", "1", "0 1 2")
    assert float(t["mean"]) == 92.5 and float(t["std"]) == pytest.approx(0.5)
    assert (float(t["min"]), float(t["max"])) == (92.0, 93.0)
    # full 93, none 90.5: (92.5 - 90.5) / (93 - 90.5) = 0.8
    assert float(t["gain_share"]) == pytest.approx(0.8) and t["gain_share_reason"] == ""
    assert (t["gain_share_n"], t["gain_share_seeds"]) == ("3", "0 1 2")
    # vs full, paired by seed: 92-92, 92.5-93, 93-94 = 0, -0.5, -1 (the failed seed 3 unpaired)
    assert (t["vs_full_n"], t["vs_full_seeds"]) == ("3", "0 1 2")
    assert float(t["vs_full_diff"]) == pytest.approx(-0.5)
    assert float(t["vs_full_rel"]) == pytest.approx(-0.5 / 93 * 100)
    # saved vs full: params 1 - 290k/300k, GFLOPs 1 - 0.0792/0.08, latency 1 - 3.5/4
    assert float(t["params_saved"]) == pytest.approx(1 / 30)
    assert float(t["gflops_saved"]) == pytest.approx(0.01)
    assert float(t["latency_saved"]) == pytest.approx(0.125)
    assert float(t["latency_ms"]) == pytest.approx(3.5) and t["params_total"] == "290000"
    assert float(t["extra_top5"]) == pytest.approx(97.5) and float(t["rank"]) == 2.0
    full, none = (
        summary_row(tree, "cifar10", "r20-se-full"),
        summary_row(tree, "cifar10", "r20-se-none"),
    )
    assert (float(full["gain_share"]), float(none["gain_share"])) == (1.0, 0.0)
    # A control is not compared with itself; none vs full is the SAM's own effect.
    assert full["vs_full_n"] == "" and full["vs_full_reason"] == "" and none["vs_none_n"] == ""
    assert float(none["vs_full_diff"]) == pytest.approx(-2.5)
    assert float(full["vs_none_diff"]) == pytest.approx(2.5)
    assert float(full["std"]) == pytest.approx(1.0) and float(none["std"]) == pytest.approx(0.5)
    assert (float(full["rank"]), float(none["rank"])) == (1.0, 3.0)
    assert float(none["latency_saved"]) == pytest.approx(0.25)


def test_summary_csv_columns_are_plain_numbers(tree):
    rows = read_csv(tree / "leaderboards" / "summary.csv")
    assert len(rows) == 13  # 4 cells x 3 tickets + the random ticket that only failed
    numeric = ("density", "n", "mean", "std", "vs_full_rel", "vs_full_rel_lo", "vs_none_hi")
    numeric += ("gain_share", "params_total", "gflops", "params_saved", "latency_ratio_hi")
    for r in rows:
        for col in numeric:
            if r[col] != "":
                float(r[col])  # no thousands separators, no "+3.3%" strings
                assert "," not in r[col] and "%" not in r[col] and not r[col].startswith("+")


def test_gain_share_on_a_lower_is_better_metric(tree):
    # MAE: full 10 11, none 13 14, ticket 11 12 -> (11.5 - 13.5) / (10.5 - 13.5) = 2/3
    t = summary_row(tree, "shanghaitech_b", "r20_se_ticket")
    assert t["metric"] == "mae" and t["higher_is_better"] == "False"
    assert float(t["gain_share"]) == pytest.approx(2 / 3)
    assert float(summary_row(tree, "shanghaitech_b", "r20-se-none")["gain_share"]) == 0.0
    # rank 1 is the LOWEST error
    assert float(summary_row(tree, "shanghaitech_b", "r20-se-full")["rank"]) == 1.0
    # The direction matters: read as higher-is-better, full (10.5) is worse than none (13.5).
    ticket, full, none = {0: 11.0, 1: 12.0}, {0: 10.0, 1: 11.0}, {0: 13.0, 1: 14.0}
    assert gain_share(ticket, full, none, False).value == pytest.approx(2 / 3)
    flipped = gain_share(ticket, full, none, True)
    assert math.isnan(flipped.value)
    assert flipped.reason == "full is worse than none by 3 (beyond seed noise): no gain to share"


def test_nan_rule_with_its_reasons(tree):
    seg = summary_row(tree, "cityscapes", "r20_se_ticket")
    # full 70 72, none 70.5 71.5: per-seed gaps -0.5, 0.5 (std 0.7071): mean gap 0 <= 0.7071
    assert seg["gain_share"] == "nan"
    assert seg["gain_share_reason"] == (
        "full-vs-none gap 0 is within seed noise (std of the per-seed gaps 0.7071)"
    )
    one_seed = summary_row(tree, "cifar100", "r20_se_ticket")
    assert one_seed["gain_share"] == "nan" and one_seed["gain_share_reason"] == (
        "1 shared seed (0): seed noise cannot be judged (needs 2 or more)"
    )
    random = summary_row(tree, "cityscapes", "r20-se-random")
    assert (random["n"], random["n_failed"], random["mean"], random["rank"]) == (
        "0",
        "2",
        "nan",
        "",
    )
    assert random["gain_share_reason"] == "no finished run"
    assert random["vs_full_reason"] == random["vs_none_reason"] == "no finished run"

    # boundary: |gap| == std of the per-seed gaps is noise; a larger gap is not (the gaps
    # 0, 1, 2 have a std of exactly 1)
    none = {0: 0.0, 1: 0.0, 2: 0.0}
    ticket = {0: 1.0, 1: 1.0, 2: 1.0}
    at_noise = gain_share(ticket, {0: 0.0, 1: 1.0, 2: 2.0}, none, True)  # gap 1, std 1
    assert math.isnan(at_noise.value)
    assert at_noise.reason == "full-vs-none gap 1 is within seed noise (std of the per-seed gaps 1)"
    beyond = gain_share(ticket, {0: 0.5, 1: 1.5, 2: 2.5}, none, True)  # gap 1.5, std 1
    assert beyond.value == pytest.approx(1 / 1.5) and beyond.reason is None
    # Pairing: a seed that lifts every arm alike is not noise between full and none.
    lifted = {0: 0.0, 1: 10.0, 2: 20.0}
    paired = gain_share(
        {s: v + 0.5 for s, v in lifted.items()},
        {s: v + 1.0 for s, v in lifted.items()},
        lifted,
        True,
    )
    assert paired.value == pytest.approx(0.5) and paired.reason is None
    # means come from the seeds all three share only: seed 2's outlier is ignored
    shared = gain_share({0: 5.0, 1: 7.0, 2: 100.0}, {0: 8.0, 1: 10.0}, {0: 0.0, 1: 2.0}, True)
    assert shared.seeds == (0, 1) and shared.value == pytest.approx((6 - 1) / (9 - 1))
    lonely = gain_share({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.0, 1: 2.0}, {1: 0.0, 2: 0.0}, True)
    assert lonely.seeds == (1,) and math.isnan(lonely.value)
    assert gain_share({5: 1.0}, {0: 1.0}, {0: 0.0}, True).reason == (
        "no seed shared by the ticket and its full and none controls"
    )


def _extra_record(ticket_key: str, *, protocol: dict, seed: int = 0, name: str | None = None):
    t = tickets()[ticket_key]
    if name:
        from bench.ticket.schema import make_ticket

        t = make_ticket(name, t.backbone, t.sam, t.mask, t.provenance, sharing=t.sharing)
    return make_record(
        ticket=t,
        task="classification",
        dataset="cifar10",
        eval_split="test",
        select_split="heldout",
        head="linear",
        metric="top1",
        value=91.0,
        higher_is_better=True,
        seed=seed,
        run_dir="x",
        protocol=protocol,
    )


def test_controls_are_matched_by_protocol_and_must_be_unique(tree, tmp_path):
    from fixtures_leaderboard import PROTOCOL

    out = writable_copy(tree, tmp_path)
    # Another protocol is another cell: the ticket has no controls there.
    write_record(out, _extra_record("ticket", protocol={**PROTOCOL, "epochs": 3}))
    # A second full control (same mask, another name) in the original cell.
    write_record(out, _extra_record("full", protocol=PROTOCOL, name="r20-se-full-again"))
    lb = build(out)
    rows = [r for r in lb.summary if r["dataset"] == "cifar10" and r["ticket"] == "r20_se_ticket"]
    by_epochs = {json.loads(r["protocol"])["epochs"]: r for r in rows}
    no_full = (
        "no full control (resnet20-se, sharing block) with the same task, dataset, split, head "
        "and protocol"
    )
    assert by_epochs[3]["vs_full_reason"] == by_epochs[3]["gain_share_reason"] == no_full
    assert by_epochs[3]["verdict_accuracy"] is None
    two = "2 full controls match (r20-se-full, r20-se-full-again)"
    assert by_epochs[2]["vs_full_reason"] == by_epochs[2]["gain_share_reason"] == two
    assert by_epochs[3]["protocol_id"] != by_epochs[2]["protocol_id"]


def test_ticket_ranks_across_tasks(tree, tmp_path):
    ranks = {r["ticket"]: r for r in read_csv(tree / "leaderboards" / "ranks.csv")}
    # Tickets compared with full (random never finished; full is the reference).
    assert list(ranks) == ["r20_se_ticket", "r20-se-none"]  # best first
    ticket, none = ranks["r20_se_ticket"], ranks["r20-se-none"]
    # vs full, % of full: cifar10 -0.5/93, cifar100 +1/70, shanghaitech -1/10.5, cityscapes 0
    rel = (-0.5 / 93 + 1 / 70 - 1 / 10.5 + 0) / 4 * 100
    assert float(ticket["mean_rel_vs_full"]) == pytest.approx(rel)
    # At 1%: cifar10 [-1.87, +0.80] undecided, cifar100 n=1 undecided, shanghaitech -9.52
    # exactly (both seeds differ by 1) loses, cityscapes [-17.9, +17.9] undecided.
    assert (ticket["cells_kept"], ticket["cells_lost"], ticket["cells_undecided"]) == (
        "0",
        "1",
        "3",
    )
    assert (ticket["n_cells"], ticket["n_tasks"], ticket["rank"]) == ("4", "3", "1")
    assert float(ticket["params_saved"]) == pytest.approx(1 / 30)
    assert float(ticket["latency_saved"]) == pytest.approx((0.125 + 0.125 + 0.125 + 0.15) / 4)
    assert none["rank"] == "2"
    # At 9%, none keeps cifar10 ([-4.02, -1.35]) and cityscapes ([-8.95, +8.95]) while the
    # ticket keeps only cifar10 and loses shanghaitech (-9.52): cells kept rank first.
    lb = build(tree, tolerance_pct=9.0)
    by_name = {r["ticket"]: r for r in lb.ranks}
    assert [r["ticket"] for r in lb.ranks] == ["r20-se-none", "r20_se_ticket"]
    assert (by_name["r20-se-none"]["cells_kept"], by_name["r20_se_ticket"]["cells_kept"]) == (2, 1)
    assert by_name["r20_se_ticket"]["mean_rel_vs_full"] == pytest.approx(rel)


# ---- exports -----------------------------------------------------------------------------
MD_CROWD = """\
| Task | Dataset | Head | Ticket | Stages | Density | Metric | Result | n | vs full (%) | vs none (%) | Gain share | Params saved | GFLOPs saved | Latency saved | Verdict vs full (accuracy, params, FLOPs, latency) | Rank |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| crowd_counting | shanghaitech_b | csrnet | r20-se-none | 000\\|000\\|000 | 0.000 | mae ↓ | 13.50 ± 0.71 | 2 | -28.57 [-28.57, -28.57] |  | 0.00 | 6.7% | 2.5% | 25.0% | loses, cheaper, cheaper, faster | 3 |
| crowd_counting | shanghaitech_b | csrnet | r20-se-full | 111\\|111\\|111 | 1.000 | mae ↓ | **10.50 ± 0.71** | 2 |  | +22.22 [+22.22, +22.22] | 1.00 | 0.0% | 0.0% | 0.0% |  | 1 |
| crowd_counting | shanghaitech_b | csrnet | r20_se_ticket | 101\\|010\\|110 | 0.556 | mae ↓ | 11.50 ± 0.71 | 2 | -9.52 [-9.52, -9.52] | +14.81 [+14.81, +14.81] | 0.67 | 3.3% | 1.0% | 12.5% | loses, cheaper, cheaper, faster | 2 |

Tickets across tasks, ranked by the cells where accuracy is kept, then the mean difference vs full, then the mean parameters saved.

| Rank | Ticket | Stages | Accuracy kept | Mean vs full (%) | Params saved | GFLOPs saved | Latency saved | Tasks |
|---|---|---|---|---|---|---|---|---|
| 1 | r20_se_ticket | 101\\|010\\|110 | 0/1 cells | -9.52 | 3.3% | 1.0% | 12.5% | crowd_counting |
| 2 | r20-se-none | 000\\|000\\|000 | 0/1 cells | -28.57 | 6.7% | 2.5% | 25.0% | crowd_counting |
"""  # noqa: E501
# MAE, full 10 11, none 13 14, ticket 11 12: every per-seed difference is the same, so the
# intervals are points: none vs full -3 / 10.5 = -28.57%, the ticket -1 / 10.5 = -9.52%.


def test_markdown_table(tree, tmp_path):
    out = writable_copy(tree, tmp_path)
    text, written = leaderboard(out, fmt="md", task="crowd_counting")
    assert text == f"{caption(1.0)}\n\n{MD_CROWD}"
    md = out / "leaderboards" / "summary__task-crowd_counting.md"
    assert md in written and md.read_text() == text
    # Only real absences are footnoted (here a ticket that only failed); ties are all bold.
    text, _ = leaderboard(out, fmt="md", task="seg*")
    assert text.count("n/a [1]") == 2 and "[2]" not in text
    assert "[1] segmentation/cityscapes (fcn) r20-se-random: no finished run" in text
    assert text.count("**71.00") == 3 and "| failed | 0 (2 failed) |" in text
    # mIoU 71 71 vs full 70 72: differences +1, -1, mean 0, std sqrt(2), n 2:
    # t(0.975, 1) * sqrt(2) / sqrt(2) = 12.706 -> 12.706 / 71 = 17.90% either side
    assert "| +0.00 [-17.90, +17.90] |" in text
    assert "'+" not in text and "nan" not in text


def test_a_flagged_latency_inversion_is_footnoted(tree, tmp_path):
    out = writable_copy(tree, tmp_path)
    flag = "0 SAMs but 3.0% slower than r20-se-full (9 SAMs), within the 2% tolerance"
    for _, rec in list(iter_records(out)):
        if rec["setting"]["task"] == "crowd_counting" and rec["identity"]["baseline"] == "none":
            rec["cost"]["latency_flag"] = flag
            write_record(out, rec)
    text, _ = leaderboard(out, fmt="md", task="crowd_counting")
    none_row = next(line for line in text.splitlines() if "r20-se-none" in line)
    assert "25.0% [1]" in none_row
    assert f"[1] crowd_counting/shanghaitech_b (csrnet) r20-se-none: {flag}" in text
    with open(out / "leaderboards" / "summary.csv", newline="") as f:
        flagged = [r for r in csv.DictReader(f) if r["latency_flag"]]
    assert [(r["task"], r["ticket"]) for r in flagged] == [("crowd_counting", "r20-se-none")]


LATEX_CROWD_ROWS = [
    r"\begin{tabular}{lllllrlrrrrrrrrlr}",
    r"\toprule",
    r"Task & Dataset & Head & Ticket & Stages & Density & Metric & Result & n & vs full (\%) & "
    r"vs none (\%) & Gain share & Params saved & GFLOPs saved & Latency saved & "
    r"Verdict vs full (accuracy, params, FLOPs, latency) & Rank \\",
    r"\midrule",
    r"crowd\_counting & shanghaitech\_b & csrnet & r20-se-none & "
    r"000\textbar{}000\textbar{}000 & 0.000 & mae $\downarrow$ & 13.50$\pm$0.71 & 2 & "
    r"-28.57 [-28.57, -28.57] &  & 0.00 & 6.7\% & 2.5\% & 25.0\% & "
    r"loses, cheaper, cheaper, faster & 3 \\",
    r"crowd\_counting & shanghaitech\_b & csrnet & r20-se-full & "
    r"111\textbar{}111\textbar{}111 & 1.000 & mae $\downarrow$ & \textbf{10.50$\pm$0.71} & 2 & "
    r" & +22.22 [+22.22, +22.22] & 1.00 & 0.0\% & 0.0\% & 0.0\% &  & 1 \\",
    r"crowd\_counting & shanghaitech\_b & csrnet & r20\_se\_ticket & "
    r"101\textbar{}010\textbar{}110 & 0.556 & mae $\downarrow$ & 11.50$\pm$0.71 & 2 & "
    r"-9.52 [-9.52, -9.52] & +14.81 [+14.81, +14.81] & 0.67 & 3.3\% & 1.0\% & 12.5\% & "
    r"loses, cheaper, cheaper, faster & 2 \\",
    r"\bottomrule",
    r"\end{tabular}",
    r"\end{table}",
]


def test_latex_table(tree, tmp_path):
    out = writable_copy(tree, tmp_path)
    text, written = leaderboard(out, fmt="latex", task="crowd_counting")
    lines = text.splitlines()
    assert lines[:2] == [r"\begin{table}", r"\centering"]
    assert lines[2] == rf"\caption{{{latex_escape(caption(1.0))}}}" and "1\\%" in lines[2]
    assert lines[3 : 3 + len(LATEX_CROWD_ROWS)] == LATEX_CROWD_ROWS
    assert (out / "leaderboards" / "summary__task-crowd_counting.tex") in written
    rank_table = lines[3 + len(LATEX_CROWD_ROWS) + 1 :]
    assert rank_table[3] == r"\begin{tabular}{rllrrrrrl}"
    assert (
        r"1 & r20\_se\_ticket & 101\textbar{}010\textbar{}110 & 0/1 cells & -9.52 & 3.3\% & "
        r"1.0\% & 12.5\% & crowd\_counting \\"
    ) in rank_table
    # Every row of the full table has one cell per column and balanced braces.
    text, _ = leaderboard(out, fmt="latex")
    body = [ln for ln in text.splitlines() if ln.endswith(r"\\")]
    assert len(body) == 2 + 13 + 2  # two headers, 13 summary rows, 2 ranked tickets
    assert all(ln.count(" & ") in (16, 8) for ln in body)
    assert text.count("{") == text.count("}")
    assert r"% [1] segmentation/cityscapes (fcn) r20-se-random: no finished run" in text


def test_filters_shape_the_table_never_the_data(tree, tmp_path):
    out = writable_copy(tree, tmp_path)
    text, written = leaderboard(out, fmt="csv", ticket="r20_se*", dataset="c*")
    rows = list(csv.DictReader(text.splitlines()))
    assert {(r["dataset"], r["ticket"]) for r in rows} == {
        ("cifar10", "r20_se_ticket"),
        ("cifar100", "r20_se_ticket"),
        ("cityscapes", "r20_se_ticket"),
    }
    # The ticket's comparisons still use its controls, which the filter hides.
    cifar10 = next(r for r in rows if r["dataset"] == "cifar10")
    assert float(cifar10["gain_share"]) == 0.8
    assert float(cifar10["vs_full_rel"]) == pytest.approx(-0.5 / 93 * 100)
    assert len(read_csv(out / "leaderboards" / "summary.csv")) == 13
    assert {p.name for p in written} == {
        "classification.csv",
        "crowd_counting.csv",
        "segmentation.csv",
        "summary.csv",
        "ranks.csv",
    }
    with pytest.raises(BenchError, match="no records match --task nope"):
        leaderboard(out, task="nope")
    with pytest.raises(BenchError, match="--format 'html': expected one of csv, md, latex"):
        leaderboard(out, fmt="html")
    with pytest.raises(BenchError, match="no result records"):
        leaderboard(tmp_path / "empty")


def test_bad_records_are_one_line_errors(tree, tmp_path):
    out = writable_copy(tree, tmp_path)
    _, rec = next(iter_records(out))
    path = out / "records" / "classification" / "cifar10" / "zz_bad.json"
    broken = json.loads(json.dumps(rec))
    del broken["setting"]["head"]
    path.write_text(json.dumps(broken))
    with pytest.raises(BenchError, match=r"zz_bad.json: field 'setting.head': missing"):
        collect(out)
    broken = json.loads(json.dumps(rec))
    broken["result"]["value"] = "high"
    path.write_text(json.dumps(broken))
    with pytest.raises(BenchError, match=r"zz_bad.json: field 'result.value': expected a finite"):
        collect(out)
    # A record of the same cell with another metric cannot be ranked beside the others.
    broken = json.loads(json.dumps(rec))
    broken["result"]["metric"] = "top5"
    broken["provenance"]["seed"] = 99
    path.write_text(json.dumps(broken))
    with pytest.raises(BenchError, match=r"zz_bad.json: field 'result.metric': 'top5'"):
        build(out)


# ---- plots -------------------------------------------------------------------------------
def test_pareto_front():
    pts = [(1.0, 70.0), (2.0, 75.0), (2.5, 74.0), (3.0, 75.0), (0.5, 60.0), (2.0, 75.0)]
    # (2.5, 74) is beaten by (2, 75); (3, 75) by the two equal (2, 75) points, both kept
    assert pareto_front(pts, higher_is_better=True) == [4, 0, 1, 5]
    # lower is better (an error): the cheapest point with the lowest error dominates everyone
    assert pareto_front(pts, higher_is_better=False) == [4]
    assert pareto_front([(1.0, 5.0), (2.0, 4.0), (3.0, 6.0)], higher_is_better=False) == [0, 1]


def test_plots_are_written_and_show_the_front(tree, tmp_path):
    lb = build(tree)
    paths = plot_leaderboard(lb.summary, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    expected = [
        f"{t}_{k}.{e}"
        for t in ("classification", "crowd_counting", "segmentation")
        for k in ("forest", "density", "latency")
        for e in ("pdf", "png")
    ]
    assert names == sorted(expected + ["masks.pdf", "masks.png"])
    for p in paths:
        head = p.read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n" if p.suffix == ".png" else head.startswith(b"%PDF")

    # A slower, worse copy of the none control is off the front.
    cifar10 = [r for r in lb.summary if r["dataset"] == "cifar10"]
    slow = {**cifar10[0], "ticket": "slow", "latency_ms": 3.8, "mean": 91.0, "baseline": None}
    fig = metric_vs_latency([*cifar10, slow])
    (front,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "Pareto front"]
    assert list(front.get_xdata()) == [3.0, 3.5, 4.0]
    assert list(front.get_ydata()) == [90.5, 92.5, 93.0]

    # The forest plot: one row per ticket compared with full, its interval, the band.
    fig = forest(cifar10)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "cifar10 (test), linear: r20_se_ticket (n=3)",
        "cifar10 (test), linear: r20-se-none (n=3)",
    ]
    (band,) = ax.patches
    x0 = band.get_x()
    assert (x0, x0 + band.get_width()) == (-1.0, 1.0) and band.get_label() == "tolerance ±1%"
    by_ticket = {r["ticket"]: r for r in cifar10}
    bars = [c for c in ax.collections if len(c.get_segments()) == 1]
    spans = sorted(x for c in bars for seg in c.get_segments() for x in seg[:, 0])
    want = sorted(
        by_ticket[t][f"vs_full_rel_{end}"]
        for t in ("r20-se-none", "r20_se_ticket")
        for end in ("lo", "hi")
    )
    assert spans == pytest.approx(want)

    fig = draw_masks([("a", "101|01"), ("b", "000|11")])
    faces = [p.get_facecolor()[:3] for p in fig.axes[0].patches]
    assert len(faces) == 10 and sum(f != (1.0, 1.0, 1.0) for f in faces) == 5


# ---- transfer --task all -----------------------------------------------------------------
class _CountTask(TransferTask):
    """A tiny real adapter: counts the lines of <data_root>/<dataset>/counts.txt and scores
    the absolute error of the seed-th count, with the materialized ticket's real cost."""

    name: ClassVar[str] = "toy_count"
    datasets: ClassVar[tuple[str, ...]] = ("here", "absent")
    metric: ClassVar[str] = "mae"
    higher_is_better: ClassVar[bool] = False
    head: ClassVar[str] = "sum"

    def missing(self, dataset, data_root):
        path = Path(data_root) / dataset / "counts.txt"
        return None if path.is_file() else f"{path}: not found (one count per line)"

    def run(self, run: TransferRun) -> dict:
        counts = (Path(run.data_root) / run.dataset / "counts.txt").read_text().split()
        cost = measure_cost(build_ticket_model(run.ticket), (1, 3, 32, 32), latency=False)
        rec = make_record(
            ticket=run.ticket,
            task=self.name,
            dataset=run.dataset,
            eval_split="test",
            select_split=None,
            head=self.head,
            metric=self.metric,
            value=abs(float(counts[run.seed]) - 10.0),
            higher_is_better=False,
            seed=run.seed,
            run_dir=run.out_root / "toy",
            cost=cost,
            protocol={"epochs": run.epochs},
        )
        write_record(run.out_root, rec)
        return rec


class _BrokenTask(_CountTask):
    name: ClassVar[str] = "toy_broken"
    datasets: ClassVar[tuple[str, ...]] = ("here",)
    metric: ClassVar[str] = "mIoU"
    higher_is_better: ClassVar[bool] = True
    head: ClassVar[str] = "fcn"

    def run(self, run: TransferRun) -> dict:
        raise RuntimeError("decoder exploded\nsecond line of the message")


class _BadCheckTask(_CountTask):
    name: ClassVar[str] = "toy_badcheck"
    datasets: ClassVar[tuple[str, ...]] = ("here",)

    def missing(self, dataset, data_root):
        raise OSError("permission denied")


def test_transfer_all_runs_skips_and_keeps_failures(tmp_path):
    registry: Registry[type[TransferTask]] = Registry("task")
    for cls in (_CountTask, _BrokenTask, _BadCheckTask):
        registry.register(cls.name)(cls)
    data = tmp_path / "data"
    (data / "here").mkdir(parents=True)
    (data / "here" / "counts.txt").write_text("12\n7\n")
    out = tmp_path / "out"
    said: list[str] = []
    opts = RunOptions(out_root=out, seeds=(0, 1), data_root=data, epochs=1)
    records, skipped = transfer_all(tickets()["ticket"], opts, registry, progress=said.append)

    assert skipped == [
        ("toy_badcheck", "here", "data check failed: OSError: permission denied"),
        (
            "toy_count",
            "absent",
            f"{data / 'absent' / 'counts.txt'}: not found (one count per line)",
        ),
    ]
    status = [
        (r["setting"]["task"], r["provenance"]["seed"], r["provenance"]["status"]) for r in records
    ]
    assert status == [
        ("toy_broken", 0, "failed"),
        ("toy_broken", 1, "failed"),
        ("toy_count", 0, "finished"),
        ("toy_count", 1, "finished"),
    ]
    assert [r["result"]["value"] for r in records[2:]] == [2.0, 3.0]
    failed = records[0]
    assert failed["provenance"]["reason"] == "RuntimeError: decoder exploded"
    assert failed["setting"]["head"] == "fcn" and failed["result"]["metric"] == "mIoU"
    assert failed["protocol"] == {"epochs": 1}
    on_disk = {p.name: rec for p, rec in iter_records(out)}
    assert len(on_disk) == 4
    tb = next((out / "records" / "toy_broken" / "here").glob("*seed0.traceback.txt")).read_text()
    assert "decoder exploded" in tb and "Traceback" in tb
    assert any(s.startswith("FAILED toy_broken/here seed 0") for s in said)

    table = summary_table(records, skipped)
    assert "FAILED: RuntimeError: decoder exploded" in table
    assert "toy_count/absent:" in table and "mae (lower is better)" in table
    text, paths = report(records, skipped, out)
    assert "| toy_count | here | sum | r20_se_ticket |" in text
    assert "| failed | 0 (2 failed) |" in text
    assert (out / "leaderboards" / "toy_count.csv") in paths
    runs = read_csv(out / "leaderboards" / "toy_count.csv")
    assert [float(r["value"]) for r in runs] == [2.0, 3.0]
    # the real, measured cost of the materialized ticket is in the record
    assert int(runs[0]["params_sams"]) > 0 and float(runs[0]["gflops"]) > 0
