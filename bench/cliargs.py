"""Flag helpers shared by the `bench` commands (bench/cli.py and bench/search/cli.py)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench.errors import BenchError


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
