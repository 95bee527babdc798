"""The uniform result record: its shape, atomic writes, and many writers at once."""

from __future__ import annotations

import datetime as dt
import json
import math
import multiprocessing as mp

import pytest

from bench.cost.table import measure_cost
from bench.models.slots import build_ticket_model
from bench.report.collect import collect
from bench.report.summary import summarize
from bench.runs.records import SCHEMA_VERSION, iter_records, make_record, record_path, write_record
from bench.ticket.schema import Ticket, make_ticket
from bench.util.errors import BenchError

PROCESSES, PER_PROCESS = 4, 50


@pytest.fixture(scope="module")
def ticket() -> Ticket:
    prov = {"kind": "published", "citation": "test", "source": "test"}
    return make_ticket("r20-se-5of9", "resnet20", "se", (1, 0, 1, 0, 1, 0, 1, 1, 0), prov)


def _record(ticket: Ticket, seed: int, value: float | None = 1.0, **kw) -> dict:
    args = dict(
        ticket=ticket,
        task="crowd_counting",
        dataset="shanghaitech_b",
        eval_split="test",
        select_split="train_heldout",
        head="csrnet",
        metric="mae",
        value=value,
        higher_is_better=False,
        seed=seed,
        run_dir=f"/runs/r{seed}",
        protocol={"epochs": 2, "input_size": 64},
    )
    return make_record(**{**args, **kw})


def test_record_carries_every_field_the_issue_lists(ticket, tmp_path):
    cost = measure_cost(build_ticket_model(ticket), (1, 3, 32, 32), repeats=2, warmup=1)
    rec = _record(ticket, 3, 10.5, extras={"rmse": 16.0}, cost=cost)
    assert set(rec) == {
        "schema_version",
        "identity",
        "setting",
        "result",
        "cost",
        "protocol",
        "provenance",
    }
    ident = rec["identity"]
    assert ident["ticket"] == "r20-se-5of9" and ident["ticket_checksum"] == ticket.checksum
    assert (ident["backbone"], ident["sam"], ident["sharing"]) == ("resnet20", "se", "block")
    assert (ident["kept"], ident["total"], ident["stages"]) == (5, 9, "101|010|110")
    assert ident["density"] == pytest.approx(5 / 9)
    assert rec["setting"] == {
        "task": "crowd_counting",
        "dataset": "shanghaitech_b",
        "eval_split": "test",
        "select_split": "train_heldout",
        "head": "csrnet",
    }
    assert rec["result"] == {
        "metric": "mae",
        "value": 10.5,
        "higher_is_better": False,
        "extras": {"rmse": 16.0},
    }
    c = rec["cost"]
    total, sams = c["params_total"], c["params_sams"]
    assert total == sum(p.numel() for p in build_ticket_model(ticket).parameters())
    assert 0 < sams < total and c["params_backbone"] == total - sams
    assert c["gflops"] == pytest.approx(cost.flops / 1e9) and c["input_shape"] == [1, 3, 32, 32]
    assert c["latency_ms"] > 0 and c["latency_device"].startswith("cpu")
    assert rec["protocol"] == {"epochs": 2, "input_size": 64}
    prov = rec["provenance"]
    assert (prov["status"], prov["reason"], prov["seed"]) == ("finished", None, 3)
    assert prov["run_dir"] == "/runs/r3" and prov["schema_version"] == SCHEMA_VERSION
    assert prov["code_version"].startswith("0.") or prov["code_version"].startswith("unknown")
    assert dt.datetime.fromisoformat(prov["timestamp"]).tzinfo is not None

    path = write_record(tmp_path, rec)
    assert path == (
        tmp_path
        / "records"
        / "crowd_counting"
        / "shanghaitech_b"
        / f"r20-se-5of9__{ticket.checksum[7:]}__csrnet__test__seed3.json"
    )
    assert json.loads(path.read_text()) == rec


def test_failed_runs_are_records_with_a_reason(ticket, tmp_path):
    rec = _record(ticket, 0, None, status="failed", reason="RuntimeError: out of memory")
    write_record(tmp_path, rec)
    ((_, back),) = list(iter_records(tmp_path))
    assert back["provenance"]["status"] == "failed" and back["result"]["value"] is None
    (row,) = collect(tmp_path)
    assert (row["status"], row["reason"], row["value"]) == (
        "failed",
        "RuntimeError: out of memory",
        None,
    )
    with pytest.raises(ValueError, match="needs a reason"):
        _record(ticket, 0, None, status="failed")
    with pytest.raises(ValueError, match="status 'crashed'"):
        _record(ticket, 0, status="crashed", reason="x")


def test_a_rerun_replaces_its_cell_and_nothing_is_half_written(ticket, tmp_path):
    write_record(tmp_path, _record(ticket, 0, 12.0))
    path = write_record(tmp_path, _record(ticket, 0, 11.0))
    assert [p for p, _ in iter_records(tmp_path)] == [path]
    assert json.loads(path.read_text())["result"]["value"] == 11.0
    # NaN is not JSON: the write fails before touching the file, which keeps the old record.
    with pytest.raises(ValueError):
        write_record(tmp_path, _record(ticket, 0, math.nan))
    assert json.loads(path.read_text())["result"]["value"] == 11.0
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_unreadable_records_are_one_line_errors(ticket, tmp_path):
    path = write_record(tmp_path, _record(ticket, 0))
    path.write_text('{"schema_version": 1, "identity": ')
    with pytest.raises(BenchError, match=r"seed0.json: unreadable result record"):
        list(iter_records(tmp_path))
    path.write_text(json.dumps({**_record(ticket, 0), "schema_version": 99}))
    with pytest.raises(BenchError, match=r"seed0.json: field 'schema_version': expected 1"):
        list(iter_records(tmp_path))


# ---- many writers at once ----------------------------------------------------------------
def _writer(out_root, proc: int, ticket: Ticket, barrier, same_cell: bool) -> None:
    barrier.wait()  # every process starts writing at the same moment
    for i in range(PER_PROCESS):
        seed = 0 if same_cell else proc * 1000 + i
        write_record(out_root, _record(ticket, seed, float(proc * 1000 + i)))


def _run_writers(out_root, ticket: Ticket, same_cell: bool) -> None:
    # fork: the children share the parent's imports (and its cached code version), so they
    # start in milliseconds and really do overlap.
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=_writer, args=(out_root, p, ticket, barrier, same_cell))
        for p in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES


def test_four_processes_writing_50_records_each_lose_nothing(ticket, tmp_path):
    _record(ticket, 0)  # fills the code-version cache before forking
    _run_writers(tmp_path, ticket, same_cell=False)
    records = list(iter_records(tmp_path))
    assert len(records) == PROCESSES * PER_PROCESS
    want = {p * 1000 + i for p in range(PROCESSES) for i in range(PER_PROCESS)}
    assert {rec["provenance"]["seed"] for _, rec in records} == want
    assert all(rec["result"]["value"] == rec["provenance"]["seed"] for _, rec in records)
    (row,) = summarize(collect(tmp_path))
    assert row["n"] == 200 and row["n_failed"] == 0
    assert row["mean"] == pytest.approx(sum(want) / len(want))
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".json"]
    assert leftovers == []  # no temporary file survives


def test_writers_racing_on_one_cell_leave_one_whole_record(ticket, tmp_path):
    _record(ticket, 0)
    _run_writers(tmp_path, ticket, same_cell=True)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [record_path(tmp_path, _record(ticket, 0))]
    value = json.loads(files[0].read_text())["result"]["value"]
    # the survivor is some writer's last record, complete
    assert value in {p * 1000 + PER_PROCESS - 1 for p in range(PROCESSES)}
