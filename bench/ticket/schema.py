"""Ticket files: a 0/1 mask over a network's SAM slots, with identity and provenance.

A ticket file is JSON (schema below). Loading validates every field against the model
it names and fails with one line naming the file and the field; nothing is remapped
silently (a ResNet-50 mask never applies to a ResNet-101).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.util.errors import BenchError
from bench.util.fingerprint import canonical_json, value_sha256

SCHEMA_VERSION = 1
PROVENANCE_KINDS = {
    # kind -> fields that must be present (others are free-form extras)
    "searched": ("dataset", "split", "run", "strategy", "config_hash", "seed"),
    "published": ("citation", "source"),
    "baseline": ("baseline", "seed"),
}
BASELINES = ("full", "none", "random")
TICKET_DIR = Path(__file__).resolve().parents[2] / "tickets"  # the shipped ticket files


@dataclass(frozen=True)
class Ticket:
    """A connection scheme for one network, plus where it came from."""

    name: str
    backbone: str
    sam: str
    sam_args: dict
    sharing: str
    slots: tuple[str, ...]
    mask: tuple[int, ...]
    provenance: dict = field(default_factory=dict)

    # ---- derived -----------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return f"{self.backbone}-{self.sam}"

    @property
    def kept(self) -> int:
        return sum(self.mask)

    @property
    def total(self) -> int:
        return len(self.mask)

    @property
    def density(self) -> float:
        return self.kept / self.total

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        return stage_sizes(self.slots)

    @property
    def stages(self) -> str:
        """The mask grouped by stage, e.g. "100|1011|010011|011"."""
        return mask_to_stages(self.mask, self.stage_sizes)

    def identity(self) -> dict:
        return {
            "backbone": self.backbone,
            "sam": self.sam,
            "sam_args": self.sam_args,
            "sharing": self.sharing,
            "slots": list(self.slots),
            "mask": list(self.mask),
        }

    @property
    def checksum(self) -> str:
        """sha256 over the identity fields only: same network and mask, same checksum."""
        return f"sha256:{value_sha256(self.identity(), 16)}"

    def ean_codes(self) -> tuple[int, ...]:
        """The official EAN code's per-stage integers (first block = most significant bit)."""
        return mask_to_ean(self.mask, self.stage_sizes)

    # ---- (de)serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            **self.identity(),
            "stages": self.stages,
            "kept": self.kept,
            "total": self.total,
            "density": round(self.density, 6),
            "ean_codes": list(self.ean_codes()),
            "checksum": self.checksum,
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (never a half-written ticket)."""
        from bench.util.io import atomic_write_text

        path = Path(path)
        try:
            atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        except OSError as e:  # a directory, a read-only place, a full disk
            raise BenchError(f"{path}: cannot write ticket ({e.strerror})") from None
        return path


# ---- stage strings and EAN codes ---------------------------------------------------------
def stage_sizes(slots: Sequence[str]) -> tuple[int, ...]:
    """Blocks per stage from slot ids like "layer3.4" (stage = the part before the dot)."""
    sizes: list[int] = []
    prev = None
    for sid in slots:
        stage = sid.rsplit(".", 1)[0]
        if stage != prev:
            sizes.append(0)
            prev = stage
        sizes[-1] += 1
    return tuple(sizes)


def mask_to_stages(mask: Sequence[int], sizes: Sequence[int]) -> str:
    out, i = [], 0
    for n in sizes:
        out.append("".join(str(b) for b in mask[i : i + n]))
        i += n
    return "|".join(out)


def stages_to_mask(text: str, sizes: Sequence[int]) -> tuple[int, ...]:
    """Parse "100|1011|..." (or the bits without bars) for a model with `sizes` stages."""
    parts = text.split("|") if "|" in text else None
    bits = text.replace("|", "")
    if set(bits) - {"0", "1"} or not bits:
        raise BenchError(f"mask {text!r}: expected only 0 and 1, grouped by stage with '|'")
    if parts is not None and tuple(len(p) for p in parts) != tuple(sizes):
        raise BenchError(
            f"mask {text!r}: stage lengths {[len(p) for p in parts]}, model has {list(sizes)}"
        )
    if len(bits) != sum(sizes):
        raise BenchError(f"mask {text!r}: {len(bits)} bits, model has {sum(sizes)} slots")
    return tuple(int(b) for b in bits)


def mask_to_ean(mask: Sequence[int], sizes: Sequence[int]) -> tuple[int, ...]:
    """Per-stage integers as the official code writes them: int("1011", 2) per stage."""
    return tuple(int(s, 2) for s in mask_to_stages(mask, sizes).split("|"))


def ean_to_mask(codes: Sequence[int], sizes: Sequence[int]) -> tuple[int, ...]:
    """Inverse of `mask_to_ean`; rejects codes that do not fit their stage."""
    if len(codes) != len(sizes):
        raise BenchError(f"EAN codes {list(codes)}: expected {len(sizes)} stage codes")
    bits: list[int] = []
    for code, n in zip(codes, sizes):
        if not 0 <= code < 2**n:
            raise BenchError(f"EAN code {code}: a stage of {n} blocks takes 0..{2**n - 1}")
        bits.extend(int(b) for b in format(code, f"0{n}b"))
    return tuple(bits)


# ---- building ----------------------------------------------------------------------------
def model_slots(backbone: str) -> tuple[str, ...]:
    from bench.models.backbones import BACKBONES

    return BACKBONES.get(backbone).slot_ids


def baseline_mask(kind: str, n: int, *, density: float | None = None, seed: int = 0) -> tuple:
    """full / none / random with exactly round(density * n) ones, reproducible by seed."""
    if kind == "full":
        return (1,) * n
    if kind == "none":
        return (0,) * n
    if kind == "random":
        if density is None or not 0.0 <= density <= 1.0:
            raise BenchError(f"random mask: density must be in [0, 1], got {density}")
        k = round(density * n)
        ones = set(random.Random(seed).sample(range(n), k))
        return tuple(int(i in ones) for i in range(n))
    raise BenchError(f"baseline {kind!r}: expected one of {', '.join(BASELINES)}")


def make_ticket(
    name: str,
    backbone: str,
    sam: str,
    mask: Sequence[int],
    provenance: dict,
    *,
    sam_args: dict | None = None,
    sharing: str = "block",
) -> Ticket:
    """Build and validate a ticket for `backbone` (slot ids taken from the model)."""
    from bench.models.sams import check_sam_args, sam_defaults

    try:  # before the checksum is taken over them (it refuses NaN)
        check_sam_args(sam, sam_args or {})
    except BenchError as e:
        raise BenchError(f"{name}: field 'sam_args': {e}") from None
    ticket = Ticket(
        name=name,
        backbone=backbone,
        sam=sam,
        # Stored resolved, so a ticket states every SAM argument it was made with.
        sam_args={**sam_defaults(sam), **(sam_args or {})},
        sharing=sharing,
        slots=model_slots(backbone),
        mask=tuple(int(b) for b in mask),
        provenance=dict(provenance),
    )
    return validate(ticket.to_dict(), source=name)


class Network(Protocol):
    """What fixes a ticket's network apart from its mask (a Ticket, a ModelConfig)."""

    backbone: str
    sam: str | None
    sam_args: dict
    sharing: str


def network_ticket(name: str, net: Network, mask: Sequence[int], provenance: dict) -> Ticket:
    """`make_ticket` for the network of `net` (backbone, SAM, SAM options, sharing)."""
    assert net.sam is not None, "a ticket masks a network's SAM slots"
    return make_ticket(
        name, net.backbone, net.sam, mask, provenance, sam_args=net.sam_args, sharing=net.sharing
    )


def control_tickets(ticket: Ticket, seed: int, kinds: Sequence[str] = BASELINES) -> list[Ticket]:
    """The ticket's controls of `kinds` (full, none, random of the ticket's density) for the
    same network; the random mask is drawn with `seed`."""
    out = []
    for kind in kinds:
        density = ticket.density if kind == "random" else None
        mask = baseline_mask(kind, ticket.total, density=density, seed=seed)
        prov: dict[str, Any] = {"kind": "baseline", "baseline": kind, "seed": seed}
        suffix = kind
        if kind == "random":
            prov["density"] = round(ticket.density, 6)
            suffix = f"random{ticket.density:.2f}-s{seed}"
        out.append(
            network_ticket(f"{ticket.model_name}-{ticket.sharing}-{suffix}", ticket, mask, prov)
        )
    return out


def transfer_arms(
    ticket: Ticket, kinds: Sequence[str], seeds: Sequence[int]
) -> list[tuple[str, Ticket, tuple[int, ...]]]:
    """(arm, ticket, seeds) of the ticket and its controls; a random control is per seed."""
    arms = [("ticket", ticket, tuple(seeds))]
    for kind in kinds:
        per_seed = [(s,) for s in seeds] if kind == "random" else [tuple(seeds)]
        for ss in per_seed:
            (t,) = control_tickets(ticket, ss[0], (kind,))
            if t.checksum != ticket.checksum:  # a control equal to the ticket is the ticket
                arms.append((kind, t, ss))
    return arms


# ---- loading and validation --------------------------------------------------------------
MAX_TICKET_BYTES = 1 << 20  # a ticket is a few KB; anything this big is not one
MAX_DEPTH = 16  # tickets nest 3 levels; deeper JSON is refused before anything recurses


def load_ticket(path: str | Path) -> Ticket:
    """Read and validate a ticket file; any problem is one BenchError naming the field."""
    path = Path(path)
    try:
        with open(path, "rb") as f:  # bounded read: a huge file or a device is refused
            raw = f.read(MAX_TICKET_BYTES + 1)
    except OSError as e:
        raise BenchError(f"{path}: cannot read ticket ({e.strerror})") from None
    if len(raw) > MAX_TICKET_BYTES:
        raise BenchError(f"{path}: not a ticket (larger than {MAX_TICKET_BYTES // 1024} KiB)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BenchError(
            f"{path}: not UTF-8 text (byte {e.start}); expected a JSON ticket"
        ) from None
    return validate(parse_json(text, str(path)), source=str(path))


def parse_json(text: str, source: str) -> Any:
    """Strict JSON (no NaN or Infinity, at most MAX_DEPTH levels); BenchError naming `source`."""
    depth = _nesting(text)
    if depth > MAX_DEPTH:
        raise BenchError(f"{source}: JSON nested {depth} levels deep (at most {MAX_DEPTH})")

    def refuse(name: str) -> Any:
        raise BenchError(f"{source}: {name} is not a JSON number; expected finite numbers")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as e:
        raise BenchError(
            f"{source}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None


def _nesting(text: str) -> int:
    """The deepest bracket nesting of JSON text, outside strings (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def validate(data: Any, *, source: str) -> Ticket:
    """Check a parsed ticket dict field by field and return the Ticket."""
    from bench.models.backbones import BACKBONES, SHARING_MODES
    from bench.models.sams import SAMS

    def fail(fieldname: str, msg: str) -> BenchError:
        return BenchError(f"{source}: field '{fieldname}': {msg}")

    if not isinstance(data, dict):
        raise BenchError(f"{source}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise fail(
            "schema_version", f"expected {SCHEMA_VERSION}, got {data.get('schema_version')!r}"
        )
    for key, typ in (
        ("name", str),
        ("backbone", str),
        ("sam", str),
        ("sharing", str),
        ("slots", list),
        ("mask", list),
        ("sam_args", dict),
        ("provenance", dict),
        ("checksum", str),
    ):
        if key not in data:
            raise fail(key, "missing")
        if not isinstance(data[key], typ):
            raise fail(key, f"expected {typ.__name__}, got {type(data[key]).__name__}")
    if not data["name"] or not data["name"].isprintable() or len(data["name"]) > 200:
        raise fail("name", "expected 1 to 200 printable characters")
    if data["backbone"] not in BACKBONES:
        raise fail(
            "backbone",
            f"unknown backbone {data['backbone']!r} (known: {', '.join(BACKBONES.list())})",
        )
    if data["sam"] not in SAMS:
        raise fail("sam", f"unknown SAM {data['sam']!r} (known: {', '.join(SAMS.list())})")
    from bench.models.sams import check_sam_args

    try:
        check_sam_args(data["sam"], data["sam_args"])
    except BenchError as e:
        raise fail("sam_args", str(e)) from None
    if data["sharing"] not in SHARING_MODES:
        raise fail("sharing", f"expected one of {', '.join(SHARING_MODES)}")
    expected_slots = list(model_slots(data["backbone"]))
    mask = data["mask"]
    if any(type(b) is not int or b not in (0, 1) for b in mask):
        bad = next(b for b in mask if type(b) is not int or b not in (0, 1))
        raise fail("mask", f"values must be 0 or 1, found {bad!r}")
    if len(mask) != len(expected_slots):
        raise fail(
            "mask", f"{len(mask)} bits, but {data['backbone']} has {len(expected_slots)} slots"
        )
    if data["slots"] != expected_slots:
        first = next(
            (i for i, (a, b) in enumerate(zip(data["slots"], expected_slots)) if a != b),
            min(len(data["slots"]), len(expected_slots)),
        )
        raise fail(
            "slots",
            f"do not match {data['backbone']}'s slots ({len(data['slots'])} given, "
            f"{len(expected_slots)} expected; first difference at position {first})",
        )
    prov = data["provenance"]
    kind = prov.get("kind")
    if not isinstance(kind, str) or kind not in PROVENANCE_KINDS:
        raise fail("provenance.kind", f"expected one of {', '.join(PROVENANCE_KINDS)}")
    for key in PROVENANCE_KINDS[kind]:
        if key not in prov:
            raise fail(f"provenance.{key}", f"missing (required for {kind} tickets)")
    ticket = Ticket(
        name=data["name"],
        backbone=data["backbone"],
        sam=data["sam"],
        sam_args=data["sam_args"],
        sharing=data["sharing"],
        slots=tuple(data["slots"]),
        mask=tuple(mask),
        provenance=prov,
    )
    if data["checksum"] != ticket.checksum:
        raise fail(
            "checksum",
            f"{data['checksum']} does not match the identity fields ({ticket.checksum}); "
            "the mask or model was edited by hand",
        )
    derived = ticket.to_dict()
    for key in ("stages", "kept", "total", "ean_codes", "density"):
        # Compared as canonical JSON, so 9.0 or true never pass for 9 or 1.
        if key in data and canonical_json(data[key]) != canonical_json(derived[key]):
            raise fail(key, f"{data[key]!r} disagrees with the mask ({derived[key]!r})")
    return ticket


def resolve_ticket_paths(items: Sequence[str]) -> list[Path]:
    """Files as given; a bare name means tickets/NAME.json; no items means all shipped."""
    if not items:
        return sorted(TICKET_DIR.glob("*.json"))
    out = []
    for item in items:
        p = Path(item)
        if not p.exists() and not p.suffix and (TICKET_DIR / f"{item}.json").exists():
            p = TICKET_DIR / f"{item}.json"
        out.append(p)
    return out
