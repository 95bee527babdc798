"""Where a transfer arm's weights come from, and loading them into its backbone.

An arm (the ticket, or its full / none / random control) starts a task from one of:
- `pretrained`: its own `bench train` run on a source dataset, found by identity (the
  arm's ticket checksum, the dataset, the preset and the seed: transfer seed s starts
  from pretraining seed s);
- `file`: one external checkpoint (`--init-from`, e.g. torchvision ResNet weights),
  refused when arms with different masks would share it;
- `scratch`: no pretraining, said so in every record.

`Init.identity()` enters the run hash (which weights); `Init.protocol()` enters the
record's protocol (how the arms started: the leaderboard only compares arms whose
protocols match), so it names the pretraining protocol but no path or per-arm checksum.
Loading is strict by name: every backbone tensor must be in the file with its shape; the
source's classifier is dropped (the task head starts fresh); anything else is an error.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.engine.checkpoint import load_checkpoint, unwrap_state_dict
from bench.engine.rundir import BEST_FILE, HPARAMS_FILE, RESULT_FILE
from bench.engine.state import json_or_refuse
from bench.runs.records import protocol_id
from bench.ticket.schema import Ticket
from bench.util.errors import BenchError
from bench.util.fingerprint import file_sha256
from bench.util.io import read_json

INIT_KINDS = ("pretrained", "file", "scratch")
TRAIN_KIND = "train"  # the run-directory kind of `bench train`
HEAD_PREFIXES = ("fc.",)  # a source network's classifier: never part of a task's backbone


@dataclass(frozen=True)
class Init:
    """The starting weights of one arm in one cell."""

    kind: str = "scratch"
    path: Path | None = None
    checksum: str | None = None  # sha256 (16 hex digits) of the file
    source: dict[str, Any] = field(default_factory=dict)  # the pretraining run, when any

    def identity(self) -> dict[str, Any]:
        """What selects the weights (part of the run's hash)."""
        return {"kind": self.kind, "checksum": self.checksum}

    def protocol(self) -> dict[str, Any]:
        """What the arms of one comparison must share (part of the record's protocol)."""
        if self.kind == "pretrained":
            keys = ("dataset", "preset", "protocol_id")
            return {"kind": self.kind, **{k: self.source.get(k) for k in keys}}
        if self.kind == "file":
            return {"kind": self.kind, "checksum": self.checksum}
        return {"kind": self.kind}

    def describe(self) -> str:
        if self.kind == "scratch":
            return "from scratch (no pretraining)"
        if self.kind == "pretrained":
            return f"from its {self.source['dataset']} pretraining {self.path}"
        return f"from {self.path}"


SCRATCH = Init()


def file_init(path: Path) -> Init:
    """An external checkpoint given with --init-from."""
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"--init-from {path}: a directory; expected a checkpoint file")
    if not path.is_file():
        raise BenchError(f"--init-from {path}: no such file")
    try:
        return Init("file", path.resolve(), file_sha256(path, 16))
    except OSError as e:
        raise BenchError(f"--init-from {path}: cannot read ({e.strerror})") from None


# ---- finding an arm's pretraining run ----------------------------------------------------
def _train_runs(out_root: Path) -> list[tuple[Path, dict[str, Any]]]:
    runs = []
    for meta in sorted(Path(out_root).glob(f"{TRAIN_KIND}_*/{HPARAMS_FILE}")):
        try:
            runs.append((meta.parent, read_json(meta)))
        except (OSError, ValueError):
            continue  # a broken run directory is not a candidate
    return runs


def find_pretraining(
    out_root: Path, ticket: Ticket, dataset: str, preset: str, seed: int
) -> list[tuple[Path, dict[str, Any]]]:
    """Finished `bench train` runs of this arm: (run dir, its result record)."""
    found = []
    for path, meta in _train_runs(out_root):
        ident, hp = meta.get("identity", {}), meta.get("hparams", {})
        if (ident.get("ticket"), ident.get("dataset"), hp.get("seed")) != (
            ticket.checksum,
            dataset,
            seed,
        ):
            continue
        if not (path / RESULT_FILE).is_file() or not (path / BEST_FILE).is_file():
            continue
        record = json_or_refuse(path / RESULT_FILE)
        if record.get("protocol", {}).get("preset") == preset:
            found.append((path, record))
    return found


def pretrained_init(
    out_root: Path, ticket: Ticket, arm: str, dataset: str, preset: str, seed: int, remedy: str
) -> Init:
    """The Init of `arm` from its own pretraining run; BenchError naming the arm and the
    command that makes the run (`remedy`) when there is none."""
    found = find_pretraining(out_root, ticket, dataset, preset, seed)
    if not found:
        raise BenchError(
            f"--pretrained {dataset}: the {arm} arm ({ticket.name}, {ticket.checksum}) has no "
            f"finished `bench train` run with preset {preset} and seed {seed} under {out_root}; "
            f"make it with: {remedy}"
        )
    if len(found) > 1:
        dirs = ", ".join(str(p) for p, _ in found)
        raise BenchError(
            f"--pretrained {dataset}: the {arm} arm has {len(found)} pretraining runs for seed "
            f"{seed} ({dirs}); keep one, or pass one file with --init-from"
        )
    path, record = found[0]
    best = path / BEST_FILE
    source = {
        "dataset": dataset,
        "preset": preset,
        "seed": seed,
        "run_dir": str(path),
        "protocol_id": protocol_id(record.get("protocol", {})),
        "top1": record.get("result", {}).get("value"),
    }
    return Init("pretrained", best.resolve(), file_sha256(best, 16), source)


def train_command(
    dataset: str, ticket_arg: str, model: str, controls: Sequence[str], seeds: Sequence[int], **kw
) -> str:
    """The `bench train` command that makes the pretraining of every arm."""
    argv = ["bench", "train", dataset, model, "--ticket", ticket_arg]
    if controls:
        argv += ["--controls", ",".join(controls)]
    argv += ["--seeds", ",".join(str(s) for s in seeds)]
    for key, value in kw.items():
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return shlex.join(argv)


Arm = tuple[str, Ticket, tuple[int, ...]]  # (ticket | full | none | random, ticket, seeds)


def arm_inits(
    arms: Sequence[Arm], *, pretrained: str, preset: str, out_root: Path, remedy: Callable[[], str]
) -> dict[tuple[str, int], Init]:
    """{(arm checksum, seed): Init} for every arm of a transfer: each from its own
    pretraining run of that seed, all of one seed from one pretraining protocol;
    `pretrained` "none" means from scratch. BenchError (naming the arm and the remedy
    command) when one lacks its run, before anything trains."""
    if pretrained == "none":
        return {(t.checksum, s): SCRATCH for _, t, seeds in arms for s in seeds}
    inits, protocols = {}, {}
    for arm, ticket, seeds in arms:
        for seed in seeds:
            init = pretrained_init(out_root, ticket, arm, pretrained, preset, seed, remedy())
            inits[(ticket.checksum, seed)] = init
            protocols.setdefault(seed, {})[arm] = init.source["protocol_id"]
    for seed, by_arm in protocols.items():
        if len(set(by_arm.values())) > 1:
            said = ", ".join(f"{a} {p}" for a, p in by_arm.items())
            raise BenchError(
                f"--pretrained {pretrained}: the arms' pretraining runs of seed {seed} follow "
                f"different protocols ({said}); retrain them alike (same flags) to compare them"
            )
    return inits


# ---- loading -----------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadReport:
    """Which tensors a load used (by name), which the backbone lacked, which it dropped."""

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "loaded": len(self.loaded),
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
        }


def state_dict_of(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """The weights in a checkpoint: the suite's ("model"), mmengine's ("state_dict") or bare."""
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    sd = unwrap_state_dict({k: v for k, v in obj.items() if k != "format"})
    if any(k.startswith("backbone.") for k in sd):  # a whole segmentor: keep its backbone
        sd = {k.removeprefix("backbone."): v for k, v in sd.items() if k.startswith("backbone.")}
    if not sd:
        raise BenchError(f"{where}: no weights in the file")
    return sd


def check_ticket(path: Path, ticket: Ticket) -> None:
    """A checkpoint inside a `bench train` run directory must be of this very ticket."""
    meta = Path(path).parent / HPARAMS_FILE
    if not meta.is_file():
        return  # an external file (torchvision, timm): only its tensors can be checked
    try:
        ident = read_json(meta).get("identity", {})
    except (OSError, ValueError, AttributeError):
        raise BenchError(
            f"{meta}: unreadable run metadata (expected a JSON object), so {path} cannot "
            "be matched to its ticket"
        ) from None
    theirs = ident.get("ticket") if isinstance(ident, dict) else None
    if theirs is not None and theirs != ticket.checksum:
        raise BenchError(
            f"{path}: a checkpoint of ticket {theirs}, not of {ticket.name} ({ticket.checksum})"
        )


def load_state(
    net: nn.Module,
    state: dict[str, Any],
    where: str,
    drop: Callable[[str], bool] | None = None,
    *,
    head: bool = False,
) -> LoadReport:
    """Load `state` into `net`'s backbone strictly by name; the source's head keys (and keys
    `drop` accepts) are left out and reported as unexpected, the net's own head stays fresh.
    With `head`, the head is loaded too (scoring a checkpoint as it is).
    BenchError names the first missing, foreign or misshapen tensor."""
    everything = net.state_dict()
    own = {k: v for k, v in everything.items() if head or not k.startswith(HEAD_PREFIXES)}
    heads = () if head else HEAD_PREFIXES
    skip = [k for k in state if k not in own and (k.startswith(heads) or (drop and drop(k)))]
    missing = [k for k in own if k not in state]
    foreign = [k for k in state if k not in own and k not in skip]
    if missing or foreign:
        what = f"lacks {missing[0]}" if missing else f"has {foreign[0]}, which it lacks"
        n = len(missing) or len(foreign)
        raise BenchError(f"{where}: weights do not fit the backbone (the file {what}; {n} such)")
    for k, v in own.items():
        if not isinstance(state[k], torch.Tensor):
            raise BenchError(f"{where}: {k} is a {type(state[k]).__name__}, not a tensor")
        if tuple(state[k].shape) != tuple(v.shape):
            raise BenchError(
                f"{where}: {k} has shape {tuple(state[k].shape)}, the backbone needs "
                f"{tuple(v.shape)}"
            )
    # The task's own head (if the net has one) keeps its fresh weights.
    net.load_state_dict({**everything, **{k: state[k] for k in own}}, strict=True)
    return LoadReport(tuple(own), (), tuple(skip))


def load_backbone(
    net: nn.Module,
    init: Init,
    ticket: Ticket | None = None,
    drop: Callable[[str], bool] | None = None,
) -> LoadReport | None:
    """Start `net` (a task's ticket backbone) from `init`; None when it starts from scratch."""
    if init.kind == "scratch" or init.path is None:
        return None
    if ticket is not None:
        check_ticket(init.path, ticket)
    state = state_dict_of(load_checkpoint(init.path), str(init.path))
    return load_state(net, state, str(init.path), drop)
