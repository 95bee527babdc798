"""Fingerprints: canonical JSON and sha256 digests of values, texts and files. Every
checksum, run hash, cache key and split digest of the suite is taken with these."""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any


def plain(obj: Any, where: str = "value") -> Any:
    """JSON-able copy with tuples as lists; refuse anything whose JSON form is ambiguous."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise TypeError(f"{where}: non-finite float {obj!r}")
        return obj
    if isinstance(obj, list | tuple):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"{where}: dict keys must be strings")
        return {k: plain(v, f"{where}.{k}") for k, v in obj.items()}
    raise TypeError(f"{where}: {type(obj).__name__} is not a plain JSON value")


def canonical_json(obj: Any, where: str = "value") -> str:
    """Sorted keys, no whitespace, ASCII, finite numbers only: one string per value."""
    return json.dumps(plain(obj, where), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def text_sha256(text: str, length: int | None = None) -> str:
    """Hex sha256 of a text's UTF-8 bytes (first `length` digits when given)."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def value_sha256(obj: Any, length: int | None = None) -> str:
    """Hex sha256 of a value's canonical JSON (first `length` digits when given)."""
    return text_sha256(canonical_json(obj), length)


def file_sha256(path: str | os.PathLike[str], length: int | None = None) -> str:
    """Hex sha256 of a file's bytes (first `length` digits when given)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
