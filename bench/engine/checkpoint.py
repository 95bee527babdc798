"""Checkpoints and RNG state, in a form `torch.load(weights_only=True)` accepts.

Everything stored is tensors or plain Python (dict/list/int/float/str/bool/None), so
loading never unpickles arbitrary objects. Files are written atomically.
"""

from __future__ import annotations

import os
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.util.errors import BenchError
from bench.util.io import atomic_torch_save

CHECKPOINT_FORMAT = 1


def seed_everything(seed: int) -> None:
    """Seed python `random`, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG this process uses, as tensors and plain types."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(py_state), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        # Only if CUDA was already used: querying would otherwise create a CUDA context.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:  # a different machine shape: at least the current device continues its stream
            torch.cuda.set_rng_state(cuda[0])


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically save a checkpoint dict (tagged with the format version)."""
    atomic_torch_save(path, {"format": CHECKPOINT_FORMAT, **state})


def file_damage(path: str | os.PathLike[str]) -> str | None:
    """What the bytes of a checkpoint that torch cannot read say is wrong with it ("zero
    bytes", "truncated (5000 bytes)", "not a torch checkpoint"); None when they look whole."""
    p = Path(path)
    size = p.stat().st_size
    if size == 0:
        return "zero bytes"
    with open(p, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(p):  # its directory is at the end
        return f"truncated ({size} bytes)"
    if head != b"PK\x03\x04" and not head.startswith(b"\x80"):  # zip or legacy pickle
        return "not a torch checkpoint"
    return None


def peek_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint's dict without reading its tensors (memory-mapped): cheap enough to look
    at every run of a study. BenchError (saying what is wrong) when it can't be read."""
    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a legacy file cannot be mapped: read it whole
        return load_checkpoint(p)
    if not isinstance(obj, dict):
        raise BenchError(f"checkpoint {p} holds a {type(obj).__name__}, not a dict")
    return obj


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; BenchError if it can't be read."""
    p = Path(path)
    if not p.is_file():
        raise BenchError(f"checkpoint not found: {p}")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning: the error says it
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        first = file_damage(p) or (lines[0] if lines else type(e).__name__)
        if first.startswith("Weights only load failed"):  # not torch's advice to load unsafely
            found = [x for x in lines if "GLOBAL" in x or "Unsupported" in x] or ["an object"]
            first = f"refused: it holds more than weights ({found[0]})"
        raise BenchError(f"cannot read checkpoint {p}: {first}") from e
    if not isinstance(obj, dict):
        raise BenchError(f"checkpoint {p} holds a {type(obj).__name__}, not a dict")
    fmt = obj.get("format", CHECKPOINT_FORMAT)
    if isinstance(fmt, int) and fmt > CHECKPOINT_FORMAT:
        raise BenchError(f"checkpoint {p} has format {fmt}; this code reads <= {CHECKPOINT_FORMAT}")
    return obj


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def unwrap_state_dict(sd: dict[str, Any]) -> dict[str, Any]:
    """Strip DDP ("module.") and torch.compile ("_orig_mod.") key prefixes."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for pre in _WRAPPER_PREFIXES:
                if k.startswith(pre):
                    k, changed = k[len(pre) :], True
        out[k] = v
    return out


def load_model_weights(
    model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True
) -> dict[str, Any]:
    """Load weights into `model` from a checkpoint ("model" key) or a bare state_dict.

    Returns the loaded file's dict. BenchError when the file or its keys don't fit.
    """
    obj = load_checkpoint(path)
    if isinstance(obj.get("model"), dict):
        sd = obj["model"]
    else:  # a bare state_dict (minus the format tag a bare dict never has anyway)
        sd = {k: v for k, v in obj.items() if k != "format"}
    sd = unwrap_state_dict(sd)
    try:
        model.load_state_dict(sd, strict=strict)
    except RuntimeError as e:
        detail = " ".join(str(e).split())  # one line: the CLI prints BenchError as one
        if len(detail) > 400:
            detail = detail[:400] + " ..."
        raise BenchError(f"checkpoint {path} does not fit the model: {detail}") from None
    return obj
