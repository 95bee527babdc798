"""What every `bench` command shares: the help format, one-line argument errors, argument
types that check a value the moment it is parsed, and the flags several commands take.

Nothing here imports torch or a registry's module (bench.cli.catalog names things lightly): a
bad argument is reported before any heavy import.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.cli import catalog
from bench.engine.checkpoint_interval import add_checkpoint_flag
from bench.ticket.schema import (  # noqa: F401  (re-exported for the commands)
    TICKET_DIR,
    resolve_ticket_paths,
)
from bench.util.errors import BenchError

SEED_LIMIT = 2**63  # seeds fit a signed 64-bit integer (torch generators, JSON readers)
DEVICE_HELP = (
    "auto (cuda when available, else cpu; under torchrun cuda:LOCAL_RANK), cpu, cuda or cuda:N"
)


# ---- help and errors ---------------------------------------------------------------------
class Formatter(argparse.RawDescriptionHelpFormatter):
    """Prose paragraphs wrapped, example lines as written; a flag's default quoted once, and
    only when it says something (not None, False or empty, not already in the help)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = argparse.HelpFormatter._fill_text  # the wrapping RawDescription turns off
        return "\n\n".join(
            p if "\n" in p or p.startswith(" ") else fill(self, p, width, indent)
            for p in text.split("\n\n")
        )

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        quiet = any(default is v for v in (None, False, argparse.SUPPRESS)) or default == []
        if quiet or "default" in text or not (action.option_strings or action.nargs in ("?", "*")):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list) else "%(default)s"
        return f"{text} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the argument (exit 2), prefixed
    like every other `bench` error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"bench: error: {message} (see {self.prog} --help)\n")


def command_parser(
    sub: argparse._SubParsersAction,
    name: str,
    help_text: str,
    example: str,
    usage: str = "",
    summary: str = "",
) -> argparse.ArgumentParser:
    """A command's parser: its help, then its examples (one per line); `summary` (default:
    the help's first sentence) is its line in the parent's list of commands."""
    examples = "\n".join(f"  {line}" for line in example.splitlines())
    return sub.add_parser(
        name,
        help=summary or help_text.split(". ")[0].rstrip(".") + ".",
        description=f"{help_text}\n\nexample:\n{examples}",
        formatter_class=Formatter,
        usage=usage or None,
    )


# ---- argument types: each checks its value when parsed (argparse reports the flag) --------
def argument_type(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse type from a function that raises ValueError saying what it expected."""

    def parse(text: str) -> Any:
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name
    return parse


def seeds(text: str) -> list[int]:
    """ "0,1,2" -> [0, 1, 2]; each in 0..2**63-1."""
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers like 0,1,2") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one seed, e.g. 0,1,2")
    if bad := [s for s in out if not 0 <= s < SEED_LIMIT]:
        raise argparse.ArgumentTypeError(f"seed {bad[0]}: expected 0..2**63-1")
    return out


def seed(text: str) -> int:
    """One seed in 0..2**63-1."""
    if "," in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one integer seed")
    return seeds(text)[0]


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: expected an integer >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = _int_at_least(1)
nonnegative_int = _int_at_least(0)


def percent(text: str) -> float:
    """A finite percentage >= 0, e.g. a tolerance."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, not {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text}: expected a percentage >= 0")
    return value


def existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    return path


def device(text: str) -> str:
    """auto, cpu, cuda or cuda:N (whether this machine has it: check_device)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda or cuda:N")
    return text


def check_device(name: str) -> None:
    """A device this machine cannot give is a BenchError (torch is imported only for cuda)."""
    if name in ("auto", "cpu"):
        return  # auto falls back to cpu: always there
    from bench.engine.device import resolve_name

    resolve_name(name)


def check_heldout(text: str) -> str:
    """A held-out size: a count (5000) or per class (100/class), at least 1; else ValueError.
    (bench.data.datasets.HeldoutRule reads it; this is the check before any data.)"""
    m = re.fullmatch(r"\s*(\d+)\s*(/\s*class)?\s*", text)
    if not m:
        raise ValueError(f"{text!r}: expected a count like 5000 or 100/class")
    if int(m.group(1)) < 1:
        raise ValueError(f"{text!r}: a held-out split needs at least 1 image")
    return text


heldout = argument_type(check_heldout, "held-out size")


def out_dir(text: str) -> Path:
    """A directory to write into (made when needed), not an existing regular file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a directory")
    return path


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not found"
        raise argparse.ArgumentTypeError(f"{text}: {what}; expected a checkpoint file")
    return path


def _check_model(text: str) -> str:
    catalog.check_model(text)  # both names known (plugins' SAMs included)
    return text


model = argument_type(_check_model, "<backbone>-<sam>")


def choice_of(names: Sequence[str], what: str):
    """A type accepting one of `names` (argparse `choices` would print every name twice)."""

    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r} (known: {', '.join(names)})")
        return text

    parse.__name__ = what
    return parse


MASK_FORMS = "full, none, random:DENSITY, stage bits like 101|010|111, or ean:CODE,CODE,..."


def mask_spec(text: str) -> str:
    """full | none | random:DENSITY | stage bits | ean:codes, checked for form (lengths are
    checked against the model when the mask is built)."""
    kind, _, rest = text.partition(":")
    ok = text in ("full", "none") or bool(re.fullmatch(r"[01]+(\|[01]+)*", text))
    if kind == "random" and rest:
        try:
            density = float(rest)
        except ValueError:
            density = None
        if density is None or not 0.0 <= density <= 1.0:
            raise argparse.ArgumentTypeError(f"{text!r}: density must be a number in [0, 1]")
        ok = True
    elif kind == "ean" and rest:
        ok = bool(re.fullmatch(r"\d+(,\d+)*", rest))
    if not ok:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {MASK_FORMS}")
    return text


def control_mask(text: str) -> str:
    """A control's mask: full, none or random:DENSITY (other masks come in a ticket file)."""
    mask_spec(text)
    if text not in ("full", "none") and not text.startswith("random:"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected full, none or random:DENSITY; pass other masks via --ticket"
        )
    return text


# ---- flags several commands share ---------------------------------------------------------
def add_run_flags(
    p: argparse.ArgumentParser,
    *,
    seeds_default: Sequence[int] | None = (0,),
    seeds_help: str = "comma-separated seeds, one run each",
    epochs_help: str = "override the preset's epochs (a step schedule scales along)",
    iters_help: str = "override the preset's iterations",
) -> None:
    """Flags shared by every command that runs something, so scripts can drive any of them."""
    g = p.add_argument_group("run options")
    g.add_argument(
        "--out",
        type=out_dir,
        default=Path("runs"),
        metavar="DIR",
        help="root of the run directories",
    )
    g.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="where the datasets live (bench list datasets)",
    )
    g.add_argument(
        "--seeds", type=seeds, default=None if seeds_default is None else list(seeds_default),
        metavar="S,S,...", help=seeds_help,
    )  # fmt: skip
    g.add_argument("--device", type=device, default="auto", metavar="DEV", help=DEVICE_HELP)
    g.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic algorithms (torch, cuDNN, cuBLAS): bit-exact reruns on CUDA, slower",
    )
    budget = {"type": positive_int, "default": None, "metavar": "N"}
    g.add_argument("--epochs", help=epochs_help, **budget)
    g.add_argument("--iters", help=iters_help, **budget)


def add_sharing_flag(p: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    p.add_argument("--sharing", choices=catalog.SHARING, default=default, help=help_text)


def add_sam_flags(parser: argparse.ArgumentParser, *, sharing_default: str | None = "block",
                  sharing_help: str = "") -> None:  # fmt: skip
    """`--sharing` and `--sam-arg KEY=VALUE`: how the SAMs of a network are built."""
    add_sharing_flag(
        parser,
        sharing_default,
        sharing_help or "one SAM per block, or one shared per stage (official EAN code)",
    )
    parser.add_argument(
        "--sam-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="SAM constructor argument, e.g. groups=64 (bench list sams shows each SAM's)",
    )


def add_init_from_flag(p: argparse.ArgumentParser, help_text: str) -> None:
    """--init-from FILE: the weights a run starts from."""
    p.add_argument("--init-from", type=existing_file, metavar="FILE", help=help_text)


def add_train_limit_flag(p: argparse.ArgumentParser, help_text: str) -> None:
    """--train-limit N: classification trains on the first N of a seeded shuffle."""
    p.add_argument("--train-limit", type=positive_int, metavar="N", help=help_text)


def add_mode_flag(p: argparse.ArgumentParser, help_text: str = "") -> None:
    p.add_argument(
        "--mode",
        choices=catalog.MODES,
        default="new",
        help=help_text
        or "new: skip a finished run, resume an unfinished one; cover: wipe the run directory "
        "and rerun",
    )
    add_checkpoint_flag(p)


# ---- values the commands read ---------------------------------------------------------------
def literal(text: str) -> object:
    """ "3" -> 3, "0.5" -> 0.5, anything else stays a string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def split_key_values(items: Sequence[str], flag: str) -> dict[str, str]:
    """["a=1", "b-c=x"] -> {"a": "1", "b_c": "x"}; an item without '=' is a BenchError."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise BenchError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = value
    return out


def parse_key_values(items: Sequence[str], flag: str) -> dict:
    """["a=1", "b-c=x"] -> {"a": 1, "b_c": "x"} (numbers read as numbers)."""
    return {k: literal(v) for k, v in split_key_values(items, flag).items()}


def ticket_file(item: str) -> Path:
    """The ticket file `item` names (resolve_ticket_paths); a missing one is a BenchError
    naming the shipped tickets and what makes it (bench.study.tickets.missing_ticket)."""
    path = resolve_ticket_paths([item])[0]
    if not path.exists():
        from bench.study.tickets import missing_ticket

        raise BenchError(missing_ticket(path))
    return path


def control_kinds(spec: str | None) -> list[str]:
    """--controls "full,none" -> ["full", "none"], in canonical order."""
    wanted = [w.strip() for w in (spec or "").split(",") if w.strip()]
    if set(wanted) - {"full", "none", "random"}:
        raise BenchError(f"--controls {spec!r}: expected some of full, none, random")
    return [k for k in ("full", "none", "random") if k in wanted]
