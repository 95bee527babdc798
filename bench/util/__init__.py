"""Small shared utilities with no knowledge of models or runs: errors and their one-line
messages, the Registry, lazy imports, atomic file io, fingerprints, default paths, the
environment record, fault points for kill tests, progress-bar policy. Imports nothing else
from bench."""
