"""`bench`: the command-line front. Parse, run one command (bench.cli.commands), exit honestly.

Only the command being run has its module imported and its flags built, so `bench --help`
and argument errors come back at once; each command checks what is cheap to check before
it imports torch. Exit codes: 0 done, 1 some requested run failed (its record says why),
2 bad input (one line naming the argument or file), 130 interrupted. Results go to stdout;
status lines and those error lines to stderr through logging (bench.cli.logs), whose level
the global -q / -v set before anything else runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bench.cli.args import Formatter, Parser, add_run_flags, command_parser
from bench.cli.commands import SUMMARIES, module_of
from bench.cli.logs import NORMAL, QUIET, VERBOSE, setup_logging
from bench.util.errors import BenchError, RunsFailed

__all__ = ["add_run_flags", "build_parser", "main"]

_log = logging.getLogger(__name__)
_LEVELS = {"-q": QUIET, "--quiet": QUIET, "-v": VERBOSE, "--verbose": VERBOSE}

DESCRIPTION = (
    "ticketbench: lottery tickets of self-attention modules (SAMs) in ResNets - search a "
    "ticket, retrain it beside its controls, transfer it to other tasks, compare."
)
EPILOG = """examples:
  bench list models 'resnet5*-s*'
  bench search fashion-mnist resnet20-se --save-ticket tickets/mine.json
  bench train fashion-mnist resnet20-se --ticket tickets/mine.json --controls
  bench transfer --ticket tickets/mine.json --task all --pretrained fashion-mnist
  bench leaderboard --format md
  bench --import my_sams ticket make resnet20-mysam --mask full

Each command's flags and examples: bench COMMAND --help"""
# Commands that never meet a SAM: no plugin is loaded for them.
NO_PLUGINS = ("leaderboard",)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `bench` parser. only=None: every command with its flags (imports them all);
    only=NAME: just that command's flags ("" : none, for `bench --help`)."""
    parser = Parser(prog="bench", description=DESCRIPTION, epilog=EPILOG, formatter_class=Formatter)
    parser.add_argument(
        "--import",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (a module name or a .py file) first, e.g. to register your own "
        "SAM; repeatable (README: bring your own SAM)",
    )
    say = parser.add_mutually_exclusive_group()
    say.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    say.add_argument("-v", "--verbose", action="store_true", help="debug lines too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in SUMMARIES.items():
        if only is not None and name != only:
            sub.add_parser(name, help=summary)
            continue
        module = importlib.import_module(module_of(name))
        usage = getattr(module, "USAGE", "")
        p = command_parser(sub, name, module.HELP, module.EXAMPLE, usage, summary=summary)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def _before_command(argv: Sequence[str]) -> tuple[str, list[str], int]:
    """The command word ("" when there is none), and the --import modules and status level
    (-q, -v) given before it: all are needed before the parser can be built."""
    plugins, level, i = [], NORMAL, 0
    while i < len(argv):
        arg = argv[i]
        if arg in _LEVELS:
            level = _LEVELS[arg]
            i += 1
        elif arg == "--import" and i + 1 < len(argv):
            plugins.append(argv[i + 1])
            i += 2
        elif arg.startswith("--import="):
            plugins.append(arg.split("=", 1)[1])
            i += 1
        elif arg.startswith("-"):
            i += 1
        else:
            return (arg if arg in SUMMARIES else ""), plugins, level
    return "", plugins, level


def _parse(argv: Sequence[str], command: str, plugins: list[str]) -> argparse.Namespace:
    if command and (plugins or command not in NO_PLUGINS):
        from bench.cli.plugins import load_plugins

        load_plugins(plugins)  # before the flags: a plugin's SAM is a valid model name
    return build_parser(command).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command, plugins, level = _before_command(argv)
    setup_logging(level)  # once, before a plugin or the command says anything
    try:
        args = _parse(argv, command, plugins)
        args.run(args)
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2), already printed
        return e.code if isinstance(e.code, int) else int(e.code is not None) * 2
    except BenchError as e:
        _log.error("bench: error: %s", e)
        return 2
    except RunsFailed as e:
        _log.error("bench: %s", e)
        return 1
    except KeyboardInterrupt:
        _log.error("bench: interrupted")
        return 130
    except BrokenPipeError:  # the reader left early, e.g. `bench list models | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
