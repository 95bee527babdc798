"""The `bench` front: listing, ticket commands, help texts and shared run flags."""

import argparse

import pytest

from bench.cli.main import add_run_flags, build_parser, main
from bench.ticket.schema import load_ticket


def test_list_models_glob(capsys):
    assert main(["list", "models", "resnet5*-s*"]) == 0
    names = capsys.readouterr().out.split()
    assert {"resnet50-se", "resnet50-sge", "resnet56-srm"} <= set(names)
    assert "resnet18-se" not in names and "resnet50" not in names


def test_list_sams_and_tickets(capsys):
    assert main(["list", "sams"]) == 0
    out = capsys.readouterr().out
    for sam in ("se", "cbam", "eca", "srm", "sge", "simam", "gct", "dia"):
        assert f"\n{sam} " in "\n" + out
    assert main(["list", "tickets"]) == 0
    out = capsys.readouterr().out
    assert "resnet50-sge-stage-ean" in out and "100|1011|010011|011" in out


def test_make_validate_show_a_baseline_ticket(tmp_path, capsys):
    out = tmp_path / "r20.json"
    argv = ["ticket", "make", "resnet20-se", "--mask", "random:0.34", "--seed", "3", "-o", str(out)]
    assert main(argv) == 0
    t = load_ticket(out)
    assert t.kept == 3 and t.provenance == {
        "kind": "baseline",
        "baseline": "random",
        "seed": 3,
        "density": 0.34,
    }
    assert main(["ticket", "validate", str(out)]) == 0
    assert main(["ticket", "show", str(out), "--repeats", "2", "--input-size", "16"]) == 0
    text = capsys.readouterr().out
    assert "baseline random (seed 3, density 0.34)" in text
    for row in ("none", "ticket", "full"):
        assert f"\n  {row} " in text
    assert "layer3" in text and "ms" in text


def test_explicit_mask_needs_its_source(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["ticket", "make", "resnet20-se", "--mask", "101|010|111", "-o", str(out)]) == 2
    assert "--citation" in capsys.readouterr().err and not out.exists()
    argv = ["ticket", "make", "resnet20-se", "--mask", "ean:5,2,7", "--citation", "c",
            "--source", "s", "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert load_ticket(out).stages == "101|010|111"


def test_bad_mask_spec_is_exit_2(capsys):
    assert main(["ticket", "make", "resnet20-se", "--mask", "random:x"]) == 2
    assert main(["ticket", "make", "resnet20-se", "--mask", "10|1"]) == 2
    assert main(["ticket", "make", "resnet20", "--mask", "full"]) == 2
    assert main(["ticket", "make", "resnet20-sge", "--mask", "full", "--sam-arg", "groups"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("bench: error:") for line in err)


@pytest.mark.parametrize(
    "argv", [["list"], ["ticket"], ["ticket", "show"], ["ticket", "validate"], ["ticket", "make"]]
)
def test_every_command_help_has_an_example(argv, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*argv, "--help"])
    assert e.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_shared_run_flags():
    p = argparse.ArgumentParser()
    add_run_flags(p)
    a = p.parse_args(["--seeds", "0,1,2", "--device", "cuda:1", "--epochs", "3",
                      "--data-root", "/d", "--out", "o"])  # fmt: skip
    assert a.seeds == [0, 1, 2] and a.device == "cuda:1" and a.epochs == 3
    assert str(a.data_root) == "/d" and str(a.out) == "o" and a.iters is None
    with pytest.raises(SystemExit):
        p.parse_args(["--seeds", "a,b"])
