"""The numeric environment of a run, as plain JSON, and a fingerprint of what decides bits.

Seeds fix what a run draws; they do not fix how floating-point sums are ordered. That is
decided by the torch build, the processor (its model and the vector ISA torch dispatches
to), the number of intra-op threads, and on a GPU the CUDA build, the card and cuDNN's
algorithm choice. Two runs with the same seeds and the same `fingerprint` are bit-exact
(on CPU, as the suite's resume tests check); with different fingerprints they are the
same experiment computed with different rounding, and a search over a small supernet can
then end on a different (near-equal) mask. Every result record, run directory
(hparams.json) and searched ticket records `environment()` so that this can be told.

It is provenance only: no run hash, run-dir identity, ticket checksum or leaderboard
protocol includes it, so a rerun elsewhere still finds, resumes and compares its runs.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
from typing import Any

from bench.util.fingerprint import value_sha256

__all__ = ["FINGERPRINT_FIELDS", "cpu_model", "environment", "fingerprint"]

# The fields whose equality makes two runs bit-exact (with the cuDNN flags on a GPU).
FINGERPRINT_FIELDS = ("torch", "cuda", "device_model", "cpu_capability", "threads")
_GPU_FIELDS = (
    "deterministic",
    "cudnn_deterministic",
    "cudnn_benchmark",
    "cudnn",
    "tf32_matmul",
    "tf32_cudnn",
    "cublas_workspace",
)


@functools.cache
def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo "model name", else platform.processor())."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpu_name() -> str | None:
    """The current CUDA device's name when this process has used CUDA, else None."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return torch.cuda.get_device_name(torch.cuda.current_device())


def _cpu_capability() -> str | None:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def environment() -> dict[str, Any]:
    """torch / CUDA / cuDNN builds, device, threads, determinism and TF32 flags, Python,
    platform, fingerprint.

    device_model is the GPU's name when this process has used CUDA, else the CPU's model.
    fingerprint: 16 hex digits of sha256 over FINGERPRINT_FIELDS (plus cuDNN's version and
    the determinism and TF32 flags when a GPU was used: CPU fingerprints do not depend on
    them); equal fingerprints mean bit-exact reruns.
    """
    import torch

    gpu = _gpu_name()
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": "cuda" if gpu else "cpu",
        "device_model": gpu or cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_capability": _cpu_capability(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        # TF32 rounds float32 matmuls/convolutions to 10-bit mantissas on Ampere and later.
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "cublas_workspace": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    env["fingerprint"] = fingerprint(env)
    return env


def fingerprint(env: dict[str, Any]) -> str:
    """sha256 (16 hex digits) over the fields of `env` that decide bit-exactness."""
    keys = FINGERPRINT_FIELDS + (_GPU_FIELDS if env.get("device") == "cuda" else ())
    return value_sha256({k: env.get(k) for k in keys}, 16)


if __name__ == "__main__":  # python -m bench.util.environment: this machine's environment
    json.dump(environment(), sys.stdout, indent=2)
    print()
