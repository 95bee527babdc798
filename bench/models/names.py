"""Model names, `<backbone>[-<sam>]`: the one parser (light: no torch, so the CLI can use it)."""

from __future__ import annotations

import re

_MODEL_RE = re.compile(r"(?P<backbone>[a-z0-9]+)(?:-(?P<sam>[a-z0-9_]+))?")


def split_model(name: str) -> tuple[str, str | None] | None:
    """`resnet50-se` -> ("resnet50", "se"), `resnet50` -> ("resnet50", None); None when the
    name is not of that shape. The one parser of model names (names are not checked here)."""
    m = _MODEL_RE.fullmatch(name)
    return (m.group("backbone"), m.group("sam")) if m else None
