"""The `bench` commands, one module each.

A command module defines HELP (its description), EXAMPLE (one command line per line),
`add_arguments(parser)` and `run(args)`; `run` checks what is cheap to check before it
imports anything heavy. `bench --help` reads only this table: no command module is imported
to list them.
"""

from __future__ import annotations

# name -> one line for `bench --help`, in the order of the flow
SUMMARIES = {
    "list": "models, SAMs, tickets, datasets, presets, tasks, options",
    "ticket": "show, validate or make ticket files",
    "search": "search a ticket with a weight-sharing supernet",
    "train": "retrain a ticket (and controls) on a classification dataset",
    "eval": "score a checkpoint on the held-out or test split",
    "transfer": "plug a ticket into a task beside its controls and score it",
    "leaderboard": "collect result records into tables and plots",
    "runs": "what each run directory holds; repair damaged ones",
    "study": "plan, run (locally or on SLURM) and follow a whole grid from a study file",
    "demo": "the whole flow on the embedded default, in minutes on a CPU",
}
# Modules not named bench.cli.commands.<name>.
_MODULES = {
    "list": "bench.cli.commands.listing",
    "eval": "bench.cli.commands.evaluate",
    "search": "bench.cli.commands.search",
}


def module_of(name: str) -> str:
    return _MODULES.get(name, f"bench.cli.commands.{name}")
