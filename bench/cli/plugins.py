"""Bring your own SAM (or backbone, strategy, ...) without editing the suite.

Two ways; both run before a command reads its arguments, so a plugin's names are valid
everywhere (bench list, ticket make, search, train, eval, transfer):

* `bench --import MODULE ...` (repeatable): MODULE is a module name (found on sys.path or in
  the current directory) or a path to a .py file. Importing it registers what it defines,
  e.g. a function decorated with `@SAMS.register("mysam")` (bench.models.sams).
* an installed package's entry point in the group `ticketbench.sams`:
  `mysam = "mypkg.attention:mysam"` registers that factory as SAM "mysam"; an entry point
  naming a module (`mypkg = "mypkg.attention"`) is imported and registers itself.

A SAM factory is `fn(channels: int, *, option=default, ...) -> nn.Module` returning a module
that maps an NCHW tensor to one of the same shape; keyword options are what `--sam-arg`
sets and a ticket records.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from bench.util.errors import BenchError, one_line

_log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "ticketbench.sams"


def import_plugin(spec: str) -> None:
    """Import `spec`: a module name, or a .py file (registered as a module by its stem)."""
    path = Path(spec)
    try:
        if path.suffix == ".py":
            if not path.is_file():
                raise BenchError(f"--import {spec}: no such file")
            loaded = sys.modules.get(path.stem)
            if loaded is not None and getattr(loaded, "__file__", None) == str(path.resolve()):
                return  # imported once per process, as `import` would
            module_spec = importlib.util.spec_from_file_location(path.stem, path.resolve())
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[path.stem] = module
            module_spec.loader.exec_module(module)
        else:
            if str(Path.cwd()) not in sys.path and "" not in sys.path:
                sys.path.append(str(Path.cwd()))  # as `python -m` would find it, but last
            importlib.import_module(spec)
    except BenchError:
        raise
    except Exception as e:  # a plugin's own failure, reported as one line naming it
        raise BenchError(f"--import {spec}: {one_line(e)}") from None
    _log.debug(f"imported {spec}")


def load_entry_points() -> None:
    """Register the SAMs that installed packages declare (group `ticketbench.sams`)."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    if not found:
        return  # nothing to load: no SAM registry (nor torch) imported
    from bench.models.sams import SAMS

    for ep in found:
        try:
            obj = ep.load()
        except Exception as e:
            raise BenchError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}): "
                             f"{one_line(e)}") from None  # fmt: skip
        if callable(obj) and ep.name not in SAMS:
            SAMS.register(ep.name)(obj)
        _log.debug(f"loaded entry point {ep.name} = {ep.value}")


def load_plugins(modules: Sequence[str]) -> None:
    """Every installed entry point, then every `--import` module, in order."""
    load_entry_points()
    for spec in modules:
        import_plugin(spec)
