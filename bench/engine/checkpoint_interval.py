"""When the training loop checkpoints inside an epoch, and the flag that says so.

Torch-free on purpose: the command line checks `--checkpoint-every` before any heavy
import. The flag exports $TICKETBENCH_CHECKPOINT_EVERY, which the engine reads (so every
torchrun rank, and every run of a command, sees the same interval).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re

from bench.util.errors import BenchError

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "ENV_CHECKPOINT_EVERY",
    "CheckpointEvery",
    "add_checkpoint_flag",
    "checkpoint_every",
]

ENV_CHECKPOINT_EVERY = "TICKETBENCH_CHECKPOINT_EVERY"
DEFAULT_CHECKPOINT_EVERY = "10m"
_INTERVAL = re.compile(r"(\d+(?:\.\d*)?)\s*(s|m|h|b|batch|batches)?")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


@dataclasses.dataclass(frozen=True)
class CheckpointEvery:
    """When the training loop writes latest.pt inside an epoch (epoch ends always do).

    `seconds`: after the first step that ends at least this long after the last checkpoint
    (0: after every step); `batches`: after every that many steps. None: not by that
    measure. Not a hyperparameter: it changes when state is saved, never the result, so
    it stays out of the run hash.
    """

    seconds: float | None = 600.0
    batches: int | None = None

    @classmethod
    def parse(cls, text: str) -> CheckpointEvery:
        """ "10m", "90s", "1h", "0" (every step), "25b" (every 25 steps), "epoch" (never
        inside an epoch). Raises ValueError."""
        text = text.strip().lower()
        if text in ("epoch", "off", "never"):
            return cls(None, None)
        m = _INTERVAL.fullmatch(text)
        if not m:
            raise ValueError(f"{text!r}: expected e.g. 10m, 90s, 1h, 0, 25b or epoch")
        value, unit = float(m[1]), m[2] or "s"
        if unit in _UNIT_S:
            return cls(seconds=value * _UNIT_S[unit])
        if value != int(value) or value < 1:
            raise ValueError(f"{text!r}: a batch count must be a whole number >= 1")
        return cls(seconds=None, batches=int(value))


def checkpoint_every() -> CheckpointEvery:
    """The interval from $TICKETBENCH_CHECKPOINT_EVERY (set by --checkpoint-every), else
    every 10 minutes."""
    text = os.environ.get(ENV_CHECKPOINT_EVERY) or DEFAULT_CHECKPOINT_EVERY
    try:
        return CheckpointEvery.parse(text)
    except ValueError as e:
        raise BenchError(f"${ENV_CHECKPOINT_EVERY}: {e}") from None


def _interval_arg(text: str) -> str:
    try:
        CheckpointEvery.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class _ExportInterval(argparse.Action):
    """Store the flag and export it, so the engine (and torchrun's ranks) read it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        os.environ[ENV_CHECKPOINT_EVERY] = str(values)
        setattr(namespace, self.dest, values)


def add_checkpoint_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--checkpoint-every INTERVAL` (exported to $TICKETBENCH_CHECKPOINT_EVERY)."""
    parser.add_argument(
        "--checkpoint-every",
        type=_interval_arg,
        action=_ExportInterval,
        default=None,
        metavar="INTERVAL",
        help="also checkpoint inside an epoch, so a kill loses at most this much training: "
        f"e.g. 10m (the default, or ${ENV_CHECKPOINT_EVERY}), 90s, 25b (batches), epoch "
        "(only at epoch ends); never changes the result or the run hash",
    )
