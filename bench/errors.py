"""The one exception type the CLI turns into a one-line message and exit code 2."""


class BenchError(Exception):
    """Bad user input (file, field, name or dataset): shown as one line, exit code 2."""
