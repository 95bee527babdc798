"""Helpers of the bad-input corpus (tests/test_bad_inputs_*.py): how a refusal must look.

Every bad input must end in exit code 2 (or a BenchError in-process) with one line that
names the file, field or flag and what was expected, no traceback, and nothing
half-written under the output root. Tests import this module as `fixtures_bad`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.cli.main import main
from bench.ticket.schema import make_ticket
from bench.util.errors import BenchError

CLI_PENDING = pytest.mark.xfail(strict=False, reason="CLI validation pending")
BASE_PROVENANCE = {"kind": "baseline", "baseline": "full", "seed": 0}


def ticket_dict(**changes: Any) -> dict[str, Any]:
    """A valid resnet20-se ticket as its file holds it, with `changes` laid over."""
    t = make_ticket("t", "resnet20", "se", [1, 0, 1] * 3, BASE_PROVENANCE)
    return {**t.to_dict(), **changes}


def write_ticket(path: Path, content: dict | str | bytes) -> Path:
    """`content` as a ticket file: a dict as JSON, text as UTF-8, bytes as they are."""
    if isinstance(content, dict):
        content = json.dumps(content)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def stderr_lines(text: str) -> list[str]:
    """The error lines of stderr (argparse's usage block and status lines such as
    "starting ..." are not errors)."""
    return [line for line in text.strip().splitlines() if "error:" in line]


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`bench ARGV` in-process: (exit code, stderr); argparse's SystemExit becomes its code."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    return code, capsys.readouterr().err


def expect_exit_2(argv: Sequence[str], capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """Run `bench ARGV`; require exit 2, one message line holding every needle, no
    traceback. Returns the line."""
    code, err = run_cli(argv, capsys)
    assert "Traceback" not in err, err[-2000:]
    lines = stderr_lines(err)
    assert code == 2, f"exit {code}, stderr: {err[-800:]}"
    assert len(lines) == 1, f"expected one line, got: {lines}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def expect_bench_error(call: Callable[[], Any], *needles: str) -> str:
    """Call in-process; require a one-line BenchError holding every needle."""
    with pytest.raises(BenchError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# What a refused command may leave under its output root: nothing but folders, the run
# metadata a later run of the same cell rewrites anyway, and the released (empty) lock.
HARMLESS = ("hparams.json", "run.lock")


def assert_nothing_written(out: Path) -> None:
    """No record, checkpoint, result, leaderboard or temp file under `out`."""
    if not out.exists():
        return
    left = [p for p in out.rglob("*") if p.is_file() and p.name not in HARMLESS]
    assert not left, f"left behind: {[str(p.relative_to(out)) for p in left]}"
