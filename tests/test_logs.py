"""Status lines go through logging: `bench -q` keeps results and errors and drops status
lines, `bench -v` adds debug lines, and a log line never breaks a running progress bar."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tqdm import tqdm

from bench.cli.logs import NORMAL, QUIET, setup_logging
from bench.cli.main import main
from bench.util.progress import show_progress


@pytest.fixture(autouse=True)
def _normal_level() -> Iterator[None]:
    yield
    setup_logging(NORMAL)  # the level is process-wide: leave it as other tests expect


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_quiet_keeps_stdout_and_drops_status_lines(capsys) -> None:
    code, out, err = _run(capsys, "list", "models", "resnet2*")
    assert code == 0 and err.startswith("# 10 models: <backbone>[-<sam>]")
    assert _run(capsys, "-q", "list", "models", "resnet2*") == (0, out, "")
    assert _run(capsys, "--quiet", "list", "models", "resnet2*") == (0, out, "")


def test_quiet_still_prints_the_one_line_error(capsys, tmp_path: Path) -> None:
    missing = str(tmp_path / "nosuch.json")
    code, out, err = _run(capsys, "ticket", "validate", missing)
    assert code == 2 and out == ""
    assert err == f"bench: error: {missing}: cannot read ticket (No such file or directory)\n"
    assert _run(capsys, "-q", "ticket", "validate", missing) == (2, "", err)


def test_verbose_shows_debug_lines(capsys) -> None:
    code, out, err = _run(capsys, "-v", "--import", "json", "list", "tickets")
    assert code == 0 and "debug bench.cli.plugins: imported json\n" in err
    assert _run(capsys, "--import", "json", "list", "tickets") == (0, out, err.replace(
        "debug bench.cli.plugins: imported json\n", ""))  # fmt: skip


def test_quiet_and_verbose_exclude_each_other(capsys) -> None:
    code, _, err = _run(capsys, "-q", "-v", "list", "sams")
    assert code == 2 and "not allowed with argument" in err


def test_a_log_line_clears_and_redraws_a_running_bar(monkeypatch) -> None:
    setup_logging(NORMAL)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = tqdm(total=2, file=sys.stderr, mininterval=0, bar_format="{desc} {n}/{total}")
    bar.set_description_str("work", refresh=False)
    bar.update(1)
    logging.getLogger("bench.anywhere").info("a status line")
    bar.update(1)
    bar.close()
    text = sys.stderr.getvalue()
    # The bar's line is blanked, the message gets its own line, then the bar comes back.
    assert "\rwork 1/2\r        \ra status line\n\rwork 1/2\rwork 2/2" in text


def test_quiet_hides_progress_bars_on_a_terminal(monkeypatch) -> None:
    leader, follower = os.openpty()
    with open(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        setup_logging(NORMAL)
        assert show_progress(None) and not show_progress(False)
        setup_logging(QUIET)
        assert not show_progress(None) and show_progress(True)
    os.close(leader)
