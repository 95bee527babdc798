"""Flag helpers shared by the `bench` commands (bench/cli.py, bench/search/cli.py and
bench/transfer_cli.py)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError

TICKET_DIR = Path(__file__).resolve().parent.parent / "tickets"


def add_sam_flags(parser: argparse.ArgumentParser) -> None:
    """`--sharing` and `--sam-arg KEY=VALUE`: how the SAMs of a network are built."""
    parser.add_argument(
        "--sharing",
        choices=["block", "stage"],
        default="block",
        help="one SAM per block, or one shared per stage (official EAN code)",
    )
    parser.add_argument(
        "--sam-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="SAM constructor argument, e.g. groups=64",
    )


def literal(text: str) -> object:
    """ "3" -> 3, "0.5" -> 0.5, anything else stays a string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_key_values(items: Sequence[str], flag: str) -> dict:
    """["a=1", "b-c=x"] -> {"a": 1, "b_c": "x"}; an item without '=' is a BenchError."""
    out = {}
    for item in items:
        if "=" not in item:
            raise BenchError(f"{flag} {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        out[key.replace("-", "_")] = literal(value)
    return out


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


def control_kinds(spec: str | None) -> list[str]:
    """--controls "full,none" -> ["full", "none"], in canonical order."""
    wanted = [w.strip() for w in (spec or "").split(",") if w.strip()]
    if set(wanted) - {"full", "none", "random"}:
        raise BenchError(f"--controls {spec!r}: expected some of full, none, random")
    return [k for k in ("full", "none", "random") if k in wanted]
