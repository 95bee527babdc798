"""The exception types the CLI turns into one-line messages and exit codes."""


class BenchError(Exception):
    """Bad user input (file, field, name or dataset): shown as one line, exit code 2."""


class RunsFailed(Exception):
    """Some runs of a command failed (their failed records are kept): one line, exit code 1."""
