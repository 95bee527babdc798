"""Bad-input corpus, tickets: every broken ticket file is refused with exit 2 and one line
naming the file and the field (or what the file is instead), before anything recurses,
reads without bound or builds a network; `ticket make` refuses bad SAM arguments and
masks without writing a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_bad import (
    expect_bench_error,
    expect_exit_2,
    ticket_dict,
    write_ticket,
)

from bench.models.resnet import BACKBONES
from bench.models.sams import SAM_ARG_RULES, SAMS, create_sam, sam_defaults
from bench.ticket.schema import MAX_TICKET_BYTES, load_ticket


def _valid_text() -> str:
    return json.dumps(ticket_dict())


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with(**changes: Any) -> dict:
    return ticket_dict(**changes)


def _without(key: str) -> dict:
    d = ticket_dict()
    d.pop(key)
    return d


def _raw(text: str) -> str:
    """A ticket's JSON text with `text` spliced in place of the density value."""
    return _valid_text().replace('"density": 0.666667', f'"density": {text}')


R32_SLOTS = list(BACKBONES.get("resnet32").slot_ids)
R20_SLOTS = list(BACKBONES.get("resnet20").slot_ids)

# (id, file content: dict as JSON, str as UTF-8, bytes as is, expected words in the line)
CASES: list[tuple[str, dict | str | bytes, tuple[str, ...]]] = [
    # --- not JSON, or not a ticket-sized JSON object
    ("bad-json", '{"schema_version": 1,,}', ("not valid JSON", "line 1, column 22")),
    ("truncated", _valid_text()[: len(_valid_text()) // 2], ("not valid JSON",)),
    ("empty-file", "", ("not valid JSON",)),
    ("whitespace-only", "  \n ", ("not valid JSON",)),
    ("trailing-garbage", _valid_text() + " x", ("not valid JSON", "Extra data")),
    ("json-array", "[1, 2]", ("expected a JSON object, got list",)),
    ("json-string", '"ticket"', ("expected a JSON object, got str",)),
    ("json-number", "3", ("expected a JSON object, got int",)),
    ("json-null", "null", ("expected a JSON object, got NoneType",)),
    ("latin-1-bytes", b'{"name": "caf\xe9"}', ("not UTF-8 text",)),
    ("binary-garbage", bytes(range(128, 256)), ("not UTF-8 text",)),
    ("utf16-ticket", _valid_text().encode("utf-16"), ("not UTF-8 text",)),
    ("nested-100k", _nested(100_000), ("nested 100000 levels deep",)),
    ("nested-objects", '{"a":' * 5000 + "1" + "}" * 5000, ("nested 5000 levels",)),
    (
        "nested-in-provenance",
        json.dumps(
            ticket_dict(
                provenance={
                    **ticket_dict()["provenance"],
                    "x": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]],
                }
            )
        ),
        ("nested 20 levels",),
    ),  # fmt: skip
    ("nan-density", _raw("NaN"), ("NaN is not a JSON number",)),
    ("infinity-density", _raw("Infinity"), ("Infinity is not a JSON number",)),
    ("minus-infinity-density", _raw("-Infinity"), ("-Infinity is not a JSON number",)),
    # --- schema and required fields
    ("schema-99", _with(schema_version=99), ("field 'schema_version'", "expected 1, got 99")),
    ("schema-string", _with(schema_version="1"), ("field 'schema_version'", "got '1'")),
    ("schema-true", _with(schema_version=True), ("field 'schema_version'", "got True")),
    ("schema-float", _with(schema_version=1.0), ("field 'schema_version'", "got 1.0")),
    ("schema-missing", _without("schema_version"), ("field 'schema_version'", "got None")),
    *[
        (f"{key}-missing", _without(key), (f"field '{key}'", "missing"))
        for key in (
            "name",
            "backbone",
            "sam",
            "sharing",
            "slots",
            "mask",
            "sam_args",
            "provenance",
            "checksum",
        )
    ],  # fmt: skip
    ("name-int", _with(name=5), ("field 'name'", "expected str, got int")),
    ("name-empty", _with(name=""), ("field 'name'", "printable")),
    ("name-newline", _with(name="a\nb"), ("field 'name'", "printable")),
    ("name-huge", _with(name="x" * 300), ("field 'name'", "1 to 200")),
    ("backbone-list", _with(backbone=["resnet20"]), ("field 'backbone'", "expected str")),
    ("mask-string", _with(mask="101101101"), ("field 'mask'", "expected list, got str")),
    ("slots-dict", _with(slots={}), ("field 'slots'", "expected list, got dict")),
    ("sam-args-list", _with(sam_args=[]), ("field 'sam_args'", "expected dict, got list")),
    ("provenance-list", _with(provenance=[]), ("field 'provenance'", "expected dict")),
    ("checksum-int", _with(checksum=7), ("field 'checksum'", "expected str")),
    # --- unknown names
    ("unknown-backbone", _with(backbone="resnet51"), ("field 'backbone'", "unknown backbone")),
    ("backbone-case", _with(backbone="ResNet20"), ("field 'backbone'", "unknown backbone")),
    ("unknown-sam", _with(sam="nope"), ("field 'sam'", "unknown SAM 'nope'")),
    ("sam-empty", _with(sam=""), ("field 'sam'", "unknown SAM")),
    ("sharing-unknown", _with(sharing="layer"), ("field 'sharing'", "block")),
    # --- the mask against its network
    ("mask-too-long", _with(mask=[1, 0, 1] * 3 + [1]), ("field 'mask'", "10 bits", "9 slots")),
    ("mask-too-short", _with(mask=[1, 0]), ("field 'mask'", "2 bits", "9 slots")),
    ("mask-empty", _with(mask=[]), ("field 'mask'", "0 bits")),
    ("mask-two", _with(mask=[1, 0, 2] * 3), ("field 'mask'", "found 2")),
    ("mask-minus-one", _with(mask=[1, 0, -1] * 3), ("field 'mask'", "found -1")),
    ("mask-true", _with(mask=[1, 0, True] * 3), ("field 'mask'", "found True")),
    ("mask-half", _with(mask=[1, 0, 0.5] * 3), ("field 'mask'", "found 0.5")),
    ("mask-one-float", _with(mask=[1, 0, 1.0] * 3), ("field 'mask'", "found 1.0")),
    ("mask-string-bits", _with(mask=["1", "0", "1"] * 3), ("field 'mask'", "found '1'")),
    ("mask-null", _with(mask=[1, 0, None] * 3), ("field 'mask'", "found None")),
    ("other-depth-backbone", _with(backbone="resnet32"), ("field 'mask'", "resnet32 has 15")),
    ("slots-of-resnet32", _with(slots=R32_SLOTS), ("field 'slots'", "15 given, 9 expected")),
    ("slots-reversed", _with(slots=R20_SLOTS[::-1]), ("field 'slots'", "position 0")),
    (
        "slots-renamed",
        _with(slots=[s.replace("layer", "stage") for s in R20_SLOTS]),
        ("field 'slots'", "position 0"),
    ),  # fmt: skip
    ("slots-ints", _with(slots=list(range(9))), ("field 'slots'", "position 0")),
    # --- identity and derived fields
    ("checksum-flipped-bit", _with(mask=[1, 1, 1] * 3), ("field 'checksum'", "does not match")),
    ("checksum-other", _with(checksum="sha256:0000000000000000"), ("field 'checksum'",)),
    ("checksum-empty", _with(checksum=""), ("field 'checksum'", "does not match")),
    ("sharing-edited", _with(sharing="stage"), ("field 'checksum'", "does not match")),
    ("stages-inconsistent", _with(stages="111|000|111"), ("field 'stages'", "disagrees")),
    ("kept-inconsistent", _with(kept=4), ("field 'kept'", "4 disagrees with the mask (6)")),
    ("kept-float", _with(kept=6.0), ("field 'kept'", "6.0 disagrees")),
    ("kept-string", _with(kept="6"), ("field 'kept'", "'6' disagrees")),
    ("total-inconsistent", _with(total=10), ("field 'total'", "10 disagrees")),
    ("total-true", _with(total=True), ("field 'total'", "True disagrees")),
    ("density-inconsistent", _with(density=0.5), ("field 'density'", "0.5 disagrees")),
    ("density-string", _with(density="0.666667"), ("field 'density'", "disagrees")),
    ("density-null", _with(density=None), ("field 'density'", "None disagrees")),
    ("ean-codes-inconsistent", _with(ean_codes=[7, 7, 7]), ("field 'ean_codes'", "disagrees")),
    ("ean-codes-string", _with(ean_codes="5,2,5"), ("field 'ean_codes'", "disagrees")),
    # --- provenance
    ("provenance-kind", _with(provenance={"kind": "guess"}), ("field 'provenance.kind'",)),
    ("provenance-no-kind", _with(provenance={}), ("field 'provenance.kind'",)),
    ("provenance-kind-list", _with(provenance={"kind": []}), ("field 'provenance.kind'",)),
    (
        "published-no-source",
        _with(provenance={"kind": "published", "citation": "x"}),
        ("field 'provenance.source'", "missing"),
    ),
    (
        "searched-no-run",
        _with(
            provenance={
                "kind": "searched",
                "dataset": "x",
                "split": "x",
                "strategy": "x",
                "config_hash": "x",
                "seed": 0,
            }
        ),
        ("field 'provenance.run'", "missing"),
    ),  # fmt: skip
    (
        "baseline-no-seed",
        _with(provenance={"kind": "baseline", "baseline": "full"}),
        ("field 'provenance.seed'",),
    ),  # fmt: skip
    # --- SAM arguments: checked by type and range before any network is built
    (
        "rd-ratio-abc",
        _with(sam_args={"rd_ratio": "abc", "rd_divisor": 8}),
        ("field 'sam_args'", "rd_ratio='abc'", "a number in (0, 1]"),
    ),  # fmt: skip
    (
        "rd-divisor-0",
        _with(sam_args={"rd_ratio": 0.0625, "rd_divisor": 0}),
        ("field 'sam_args'", "rd_divisor=0", "an integer in 1..1024"),
    ),  # fmt: skip
    ("rd-divisor-float", _with(sam_args={"rd_divisor": 2.5}), ("rd_divisor=2.5",)),
    ("rd-divisor-true", _with(sam_args={"rd_divisor": True}), ("rd_divisor=True",)),
    ("rd-divisor-huge", _with(sam_args={"rd_divisor": 10**30}), ("rd_divisor=1000000",)),
    ("rd-ratio-negative", _with(sam_args={"rd_ratio": -0.5}), ("rd_ratio=-0.5",)),
    ("rd-ratio-zero", _with(sam_args={"rd_ratio": 0}), ("rd_ratio=0",)),
    ("rd-ratio-big-int", _with(sam_args={"rd_ratio": 10**400}), ("rd_ratio=", "(0, 1]")),
    ("rd-ratio-null", _with(sam_args={"rd_ratio": None}), ("rd_ratio=None",)),
    ("rd-ratio-list", _with(sam_args={"rd_ratio": [0.5]}), ("rd_ratio=[0.5]",)),
    ("sam-arg-unknown", _with(sam_args={"groups": 4}), ("se takes no argument 'groups'",)),
    ("sam-arg-misspelt", _with(sam_args={"rd_ration": 0.5}), ("no argument 'rd_ration'",)),
]


@pytest.mark.parametrize(("content", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_ticket_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, needles: tuple[str, ...]
) -> None:
    path = write_ticket(tmp_path / "bad.json", content)
    expect_bench_error(lambda: load_ticket(path), str(path), *needles)
    expect_exit_2(["ticket", "validate", path], capsys, str(path), *needles)


def test_corpus_ids_are_unique() -> None:
    assert len({c[0] for c in CASES}) == len(CASES)


def test_size_is_refused_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.json"
    with open(big, "wb") as f:  # sparse: 300 MiB on paper, nothing on disk
        f.truncate(300 << 20)
    expect_exit_2(["ticket", "validate", big], capsys, str(big), "larger than 1024 KiB")
    just = tmp_path / "just.json"
    just.write_bytes(b" " * (MAX_TICKET_BYTES + 1))
    expect_bench_error(lambda: load_ticket(just), "larger than")
    # A device never ends: the read is bounded all the same.
    expect_bench_error(lambda: load_ticket("/dev/zero"), "/dev/zero", "larger than")


@pytest.mark.parametrize(
    ("target", "needles"),
    [("missing.json", ("cannot read ticket", "No such file")), (".", ("cannot read ticket",))],
    ids=["missing-file", "a-directory"],
)
def test_unreadable_ticket_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, needles: tuple[str, ...]
) -> None:
    expect_exit_2(["ticket", "validate", tmp_path / target], capsys, *needles)


@pytest.mark.parametrize(
    "sam_args",
    [{"rd_ratio": "abc"}, {"rd_divisor": 0}],
    ids=["rd-ratio-abc", "rd-divisor-0"],
)
@pytest.mark.parametrize("command", ["show", "train"])
def test_bad_sam_args_never_reach_a_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sam_args: dict, command: str
) -> None:
    """`ticket show` and `bench train` used to crash with TypeError / ZeroDivisionError."""
    path = write_ticket(tmp_path / "t.json", ticket_dict(sam_args=sam_args))
    out = tmp_path / "out"
    argv = {
        "show": ["ticket", "show", path, "--no-latency"],
        "train": ["train", "fashion-mnist", "resnet20-se", "--ticket", path, "--out", out],
    }[command]
    expect_exit_2(argv, capsys, str(path), "field 'sam_args'")
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "key", "value", "words"),
    [
        ("sge", "groups", 0, "1..4096"),
        ("sge", "groups", "8", "groups='8'"),
        ("cbam", "spatial_kernel_size", 4, "odd integer"),
        ("cbam", "rd_ratio", 2, "(0, 1]"),
        ("eca", "gamma", 0, "[0.5, 16]"),
        ("eca", "beta", float("nan"), "[-16, 16]"),
        ("gc", "rd_ratio", "1/8", "(0, 1]"),
        ("simam", "e_lambda", 0, "> 0"),
        ("gct", "mode", "l3", "'l2' or 'l1'"),
        ("dia", "reduction", 0, "1..1024"),
        ("srm", "rd_ratio", 0.5, "bad options"),
    ],
)
def test_sam_arguments_are_type_checked(name: str, key: str, value: Any, words: str) -> None:
    expect_bench_error(lambda: create_sam(name, 64, **{key: value}), name, key, words)


def test_every_sam_argument_has_a_rule_its_default_passes() -> None:
    for name in SAMS.list():
        for key, default in sam_defaults(name).items():
            ok, _ = SAM_ARG_RULES[key]
            assert ok(default), (name, key, default)


MAKE_CASES = [
    ("rd-ratio-abc", ["--sam-arg", "rd_ratio=abc"], ("rd_ratio='abc'",)),
    ("rd-divisor-0", ["--sam-arg", "rd_divisor=0"], ("rd_divisor=0",)),
    ("rd-ratio-nan", ["--sam-arg", "rd_ratio=nan"], ("rd_ratio=nan",)),
    ("unknown-sam-arg", ["--sam-arg", "nosuch=1"], ("no argument 'nosuch'",)),
    ("sam-arg-no-equals", ["--sam-arg", "rd_ratio"], ("--sam-arg 'rd_ratio'", "KEY=VALUE")),
    ("random-1.5", ["--mask", "random:1.5"], ("--mask", "random:1.5", "[0, 1]")),
    ("random-negative", ["--mask", "random:-0.1"], ("--mask", "random:-0.1")),
    ("random-nan", ["--mask", "random:nan"], ("--mask", "random:nan")),
    ("random-text", ["--mask", "random:half"], ("--mask", "random:half")),
    ("ean-too-big", ["--mask", "ean:8,0,0", "--citation", "c", "--source", "s"], ("EAN code 8",)),
    ("ean-count", ["--mask", "ean:1,2", "--citation", "c", "--source", "s"], ("3 stage codes",)),
    ("ean-text", ["--mask", "ean:a,b,c"], ("--mask", "ean:a,b,c")),
    ("bits-stage-lengths", ["--mask", "10|1"], ("stage lengths",)),
    ("bits-count", ["--mask", "1011"], ("4 bits, model has 9 slots",)),
    ("bits-not-binary", ["--mask", "102|010|111"], ("--mask", "102|010|111")),
    ("bits-without-source", ["--mask", "101|010|111"], ("--citation",)),
]


@pytest.mark.parametrize(("extra", "needles"), [c[1:] for c in MAKE_CASES],
                         ids=[c[0] for c in MAKE_CASES])  # fmt: skip
def test_ticket_make_refuses_without_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needles: tuple[str, ...]
) -> None:
    out = tmp_path / "t.json"
    argv = ["ticket", "make", "resnet20-se", "-o", out, "--mask", "full", *extra]
    expect_exit_2(argv, capsys, *needles)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("model", "words"),
    [("resnet20", "SAM"), ("resnet21-se", "resnet21"), ("resnet20-nosuch", "nosuch")],
    ids=["no-sam", "unknown-backbone", "unknown-sam"],
)
def test_ticket_make_unknown_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, words: str
) -> None:
    expect_exit_2(["ticket", "make", model, "--mask", "full", "-o", tmp_path / "t.json"], capsys,
                  words)  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_ticket_make_into_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect_exit_2(["ticket", "make", "resnet20-se", "--mask", "full", "-o", tmp_path], capsys,
                  str(tmp_path), "cannot write ticket")  # fmt: skip
    assert not list(tmp_path.iterdir())


def test_brackets_and_quotes_inside_strings_are_not_nesting(tmp_path: Path) -> None:
    name = '[[[[[[[[[[[[[[[[[[[[ \\" {{{{{{{{{{{{{{{{{{{{'
    ticket = load_ticket(write_ticket(tmp_path / "t.json", ticket_dict(name=name)))
    assert ticket.name == name
