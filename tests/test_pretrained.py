"""bench.runs.pretrained: finding each arm's pretraining run by identity, refusing the wrong one.

Run directories are laid out by hand as `bench train` leaves them (hparams.json with the
identity, result.json with the record, best.pt), so these checks run in a second.
"""

import json
from pathlib import Path

import pytest
import torch

from bench.models.slots import build_ticket_model
from bench.runs.pretrained import SCRATCH, arm_inits, file_init, load_backbone, train_command
from bench.ticket.schema import control_tickets, make_ticket, transfer_arms
from bench.util.errors import BenchError

PROV = {"kind": "published", "citation": "test", "source": "test"}


def _ticket():
    return make_ticket("t", "resnet20", "se", [1, 0, 0, 1, 0, 1, 0, 0, 1], PROV)


def _fake_run(out: Path, name: str, ticket, seed: int, preset: str = "short", epochs: int = 3):
    run = out / f"train_{name}"
    run.mkdir(parents=True)
    ident = {"task": "classification", "dataset": "fashion-mnist", "ticket": ticket.checksum}
    (run / "hparams.json").write_text(json.dumps({"identity": ident, "hparams": {"seed": seed}}))
    protocol = {"preset": preset, "epochs": epochs}
    (run / "result.json").write_text(json.dumps({"protocol": protocol, "result": {"value": 1}}))
    torch.save({"model": build_ticket_model(ticket, num_classes=10).state_dict()}, run / "best.pt")
    return run


def _inits(out: Path, arms, preset: str = "short"):
    return arm_inits(arms, pretrained="fashion-mnist", preset=preset, out_root=out,
                     remedy=lambda: "bench train ...")  # fmt: skip


def test_each_arm_and_seed_finds_its_own_run(tmp_path):
    t = _ticket()
    arms = transfer_arms(t, ("full", "none"), (0, 1))
    runs = {
        (arm_t.checksum, s): _fake_run(tmp_path, f"{arm}{s}", arm_t, s)
        for arm, arm_t, seeds in arms
        for s in seeds
    }
    _fake_run(tmp_path, "other_preset", t, 0, preset="cifar-resnet164")  # not this protocol
    inits = _inits(tmp_path, arms)
    assert {k: v.path for k, v in inits.items()} == {
        k: (r / "best.pt").resolve() for k, r in runs.items()
    }
    assert len({i.protocol()["protocol_id"] for i in inits.values()}) == 1
    assert all(i.protocol()["kind"] == "pretrained" for i in inits.values())
    assert _inits(tmp_path, arms)  # and again: nothing was consumed
    none = arm_inits(arms, pretrained="none", preset="short", out_root=tmp_path, remedy=str)
    assert all(i == SCRATCH for i in none.values()) and len(none) == 6


def test_a_missing_ambiguous_or_unlike_pretraining_is_refused(tmp_path):
    t = _ticket()
    arms = transfer_arms(t, ("full", "none"), (0,))
    for arm, arm_t, _ in arms[:2]:
        _fake_run(tmp_path, arm, arm_t, 0)
    with pytest.raises(BenchError, match=r"the none arm .* make it with: bench train \.\.\."):
        _inits(tmp_path, arms)
    _fake_run(tmp_path, "none", arms[2][1], 0, epochs=5)  # other flags: another protocol
    with pytest.raises(BenchError, match="different protocols"):
        _inits(tmp_path, arms)
    _fake_run(tmp_path, "none_again", arms[2][1], 0)
    with pytest.raises(BenchError, match="2 pretraining runs for seed 0"):
        _inits(tmp_path, arms)


def test_a_checkpoint_of_another_ticket_is_refused(tmp_path):
    t = _ticket()
    (full,) = control_tickets(t, 0, ("full",))
    run = _fake_run(tmp_path, "full", full, 0)
    with pytest.raises(BenchError, match="a checkpoint of ticket"):
        load_backbone(build_ticket_model(t, num_classes=10), file_init(run / "best.pt"), t)


def test_the_remedy_is_a_command_a_shell_takes():
    cmd = train_command("cifar100", "my ticket.json", "resnet164-se", ["full", "none"], [0, 1],
                        preset="cifar-resnet164", out=Path("runs"), data_root=None)  # fmt: skip
    assert cmd == (
        "bench train cifar100 resnet164-se --ticket 'my ticket.json' --controls full,none "
        "--seeds 0,1 --preset cifar-resnet164 --out runs"
    )
