"""Named kill points, so tests can SIGKILL a real process at an exact place.

`TICKETBENCH_KILL_AT=NAME` kills this process (SIGKILL: no cleanup, no finally blocks,
as a power cut or the OOM killer would) the first time it passes `kill_point(NAME)`;
`NAME@N` the N-th time. `TICKETBENCH_PAUSE_AT=NAME[@N]` instead prints "paused at NAME"
to stderr and sleeps there (a test then starts a second process, or kills this one).
Unset (always, outside tests) a kill point costs two dict lookups.

Points: "train.step" (after an optimizer step of the engine), "seg.iter" (after an
mmengine training iteration), "search.step" (after a search round is logged, before its
checkpoint), "density.map" (after a density map is computed, before its
cache file is written), "decoded.batch" (after a batch of a decode-once cache is written
into its temporary array) and "write:FILE" (an atomic write of FILE whose temporary file is
complete but not yet renamed into place).
"""

from __future__ import annotations

import os
import signal
import sys
import time

__all__ = ["ENV_KILL_AT", "ENV_PAUSE_AT", "kill_point"]

ENV_KILL_AT = "TICKETBENCH_KILL_AT"
ENV_PAUSE_AT = "TICKETBENCH_PAUSE_AT"
_hits: dict[tuple[str, str], int] = {}


def _reached(env: str, name: str) -> bool:
    """Whether $env names point `name` and this is the hit it counts to."""
    spec = os.environ.get(env)
    if not spec:
        return False
    want, _, count = spec.rpartition("@") if "@" in spec else (spec, "", "1")
    if want != name:
        return False
    _hits[env, name] = _hits.get((env, name), 0) + 1
    return _hits[env, name] == int(count)


def kill_point(name: str) -> None:
    """SIGKILL (or pause) this process here if the environment names this point."""
    if _reached(ENV_KILL_AT, name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _reached(ENV_PAUSE_AT, name):
        # A print, not a log line: tests wait for it, whatever `bench -q` says.
        print(f"paused at {name}", file=sys.stderr, flush=True)
        time.sleep(600)
