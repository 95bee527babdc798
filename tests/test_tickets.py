"""Ticket files: round trip, EAN codes, baselines, pinned checksums, and validation."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli.main import main
from bench.models.resnet import build_model
from bench.models.slots import build_supernet, check_compatible, materialize
from bench.ticket.schema import (
    baseline_mask,
    ean_to_mask,
    load_ticket,
    make_ticket,
    mask_to_ean,
    stages_to_mask,
)
from bench.util.errors import BenchError

TICKETS = Path(__file__).resolve().parent.parent / "tickets"
R50_SIZES = (3, 4, 6, 3)
BASE = {"kind": "baseline", "baseline": "full", "seed": 0}


def _ticket(**kw):
    args = dict(name="t", backbone="resnet20", sam="se", mask=[1, 0, 1] * 3, provenance=BASE)
    args.update(kw)
    return make_ticket(args.pop("name"), args.pop("backbone"), args.pop("sam"),
                       args.pop("mask"), args.pop("provenance"), **args)  # fmt: skip


def test_ean_codes_match_the_official_convention():
    assert mask_to_ean([1] * 16, R50_SIZES) == (7, 15, 63, 7)
    sge = stages_to_mask("100|1011|010011|011", R50_SIZES)
    assert "".join(map(str, sge)) == "1001011010011011"
    assert mask_to_ean(sge, R50_SIZES) == (4, 11, 19, 3)  # int("100", 2), int("1011", 2), ...
    assert ean_to_mask((4, 11, 19, 3), R50_SIZES) == sge
    with pytest.raises(BenchError, match="takes 0..7"):
        ean_to_mask((8, 0, 0, 0), R50_SIZES)


def test_shipped_published_tickets():
    sge = load_ticket(TICKETS / "resnet50-sge-stage-ean.json")
    dia = load_ticket(TICKETS / "resnet50-dia-stage-ean.json")
    assert sge.stages == "100|1011|010011|011" and dia.stages == "110|0011|110010|011"
    for t in (sge, dia):
        assert t.sharing == "stage" and (t.kept, t.total) == (9, 16)
        assert t.provenance["kind"] == "published" and "2207.07858" in t.provenance["citation"]
    # Regression: these checksums are what users' run directories and records refer to.
    assert sge.checksum == "sha256:9efa777080a158da"
    assert dia.checksum == "sha256:61f7888c7527c51e"
    assert _ticket().checksum == "sha256:fd0692124316ab74"


def test_round_trip_and_checksum_depends_on_identity_only(tmp_path):
    t = _ticket()
    loaded = load_ticket(t.save(tmp_path / "t.json"))
    assert loaded == t
    renamed = _ticket(name="other", provenance={**BASE, "seed": 3})
    assert renamed.checksum == t.checksum
    assert _ticket(mask=[1, 1, 1] * 3).checksum != t.checksum
    assert _ticket(sharing="stage").checksum != t.checksum


def test_random_baseline_has_exact_density_and_is_seeded():
    a = baseline_mask("random", 54, density=0.5, seed=1)
    assert sum(a) == 27 and a == baseline_mask("random", 54, density=0.5, seed=1)
    assert a != baseline_mask("random", 54, density=0.5, seed=2)
    assert baseline_mask("full", 3) == (1, 1, 1) and baseline_mask("none", 2) == (0, 0)


def test_a_ticket_fits_only_its_own_model():
    t = _ticket()
    supernet = build_supernet(t)
    check_compatible(supernet, t)
    assert materialize(supernet, t.mask).mask == t.mask
    with pytest.raises(BenchError, match="sharing"):
        check_compatible(build_model("resnet20-se", sharing="stage"), t)
    with pytest.raises(BenchError, match="sam is 'se'"):
        check_compatible(build_model("resnet20-eca"), t)


def _edit(tmp_path, change) -> Path:
    d = _ticket().to_dict()
    change(d)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d) if not isinstance(d, str) else d)
    return p


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


@pytest.mark.parametrize(
    "change,field,words",
    [
        (_set("schema_version", 99), "schema_version", "expected 1"),
        (_set("backbone", "resnet51"), "backbone", "unknown backbone"),
        (_set("sam", "nope"), "sam", "unknown SAM"),
        (_set("mask", [1, 0, 1] * 3 + [1]), "mask", "10 bits, but resnet20 has 9 slots"),
        (_set("mask", [1, 0, 2] * 3), "mask", "values must be 0 or 1, found 2"),
        (_set("mask", [1, 0, True] * 3), "mask", "found True"),
        (_set("mask", [1, 1, 1] * 3), "checksum", "does not match"),
        (_set("backbone", "resnet32"), "mask", "but resnet32 has 15 slots"),
        (lambda d: d["slots"].reverse(), "slots", "first difference at position 0"),
        (_set("provenance", {"kind": "guess"}), "provenance.kind", "expected one of"),
        (
            _set("provenance", {"kind": "published", "citation": "x"}),
            "provenance.source",
            "missing",
        ),  # fmt: skip
        (_set("stages", "111|000|111"), "stages", "disagrees with the mask"),
        (lambda d: d.pop("sharing"), "sharing", "missing"),
        (_set("sam_args", {"groups": 4}), "sam_args", "se takes no argument 'groups'"),
    ],
)
def test_validation_names_the_field(tmp_path, capsys, change, field, words):
    path = _edit(tmp_path, change)
    with pytest.raises(BenchError) as e:
        load_ticket(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: field '{field}'") and words in msg and "\n" not in msg
    assert main(["ticket", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and field in err


def test_bad_json_and_missing_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"schema_version": 1,,}')
    with pytest.raises(BenchError, match=r"bad.json: not valid JSON \(line 1, column 22"):
        load_ticket(p)
    with pytest.raises(BenchError, match="cannot read ticket"):
        load_ticket(tmp_path / "missing.json")


def test_cli_exit_code_2_without_traceback(tmp_path):
    p = _edit(tmp_path, _set("mask", [3] * 9))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli.main", "ticket", "validate", str(p)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "field 'mask'" in proc.stderr
