"""mmcv-lite compatibility: make `import mmseg` work without mmcv's compiled ops.

mmseg 1.2.2 needs mmcv >= 2.0.0rc4, < 2.2.0. For torch 2.14 PyPI has no full-mmcv wheel and
mmcv's sdist does not compile against torch's C++20 headers (mmcv forces C++17, upstream
mmcv issue #3341), so the suite installs `mmcv-lite==2.1.0`, which has no `mmcv._ext`.
mmseg imports a few compiled ops at module import time (point_sample, sigmoid_focal_loss,
...), so `import mmseg.models` fails with "No module named 'mmcv._ext'". `ensure()`
registers a stand-in `mmcv._ext` whose every function raises a clear error if called. The
decoders the suite uses (FCN, PSP, ASPP, depthwise-separable ASPP, UPerNet) call no
compiled op, so they run unchanged.

With full mmcv installed (it has the real `mmcv._ext`) `ensure()` does nothing. A GPU user
who wants the compiled ops (e.g. for mmseg decoders beyond the five above) replaces
mmcv-lite with full mmcv 2.1.0 built against the installed torch and CUDA:
    pip uninstall -y mmcv-lite
    pip download --no-deps --no-binary :all: mmcv==2.1.0 && tar xzf mmcv-2.1.0.tar.gz
    # torch >= 2.6 headers need C++20; mmcv's setup.py hard-codes -std=c++17 (mmcv #3341)
    sed -i 's/c++17/c++20/g' mmcv-2.1.0/setup.py
    cd mmcv-2.1.0 && MMCV_WITH_OPS=1 FORCE_CUDA=1 pip install --no-build-isolation .
(with an older torch, OpenMMLab's prebuilt wheels at download.openmmlab.com/mmcv/dist/
<cuda>/<torch>/index.html skip the build). Nothing else in the suite changes.

Every module of this package imports `ensure()` before its first mmseg/mmcv import.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

from bench.util.errors import BenchError

STANDIN_FLAG = "__ticketbench_standin__"


class CompiledOpUnavailable(RuntimeError):
    """A compiled mmcv op was called, but only mmcv-lite (no compiled ops) is installed."""


def _unavailable(name: str) -> Callable[..., Any]:
    def op(*args: Any, **kwargs: Any) -> Any:
        raise CompiledOpUnavailable(
            f"mmcv compiled op {name!r} is not available: mmcv-lite has no mmcv._ext. Use a "
            "decoder without compiled ops (fcn, pspnet, deeplabv3, deeplabv3plus, upernet) or "
            "install full mmcv (see tasks/segmentation/compat.py)"
        )

    op.__name__ = name
    return op


def _standin() -> types.ModuleType:
    mod = types.ModuleType("mmcv._ext", "Stand-in for mmcv's compiled ops (mmcv-lite).")
    setattr(mod, STANDIN_FLAG, True)

    def __getattr__(name: str) -> Any:  # PEP 562: any op name resolves to a raising stub
        if name.startswith("__"):
            raise AttributeError(name)
        fn = _unavailable(name)
        setattr(mod, name, fn)
        return fn

    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    # A spec keeps importlib.util.find_spec("mmcv._ext") and reloads from failing.
    mod.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", loader=None)
    return mod


def has_compiled_ops() -> bool:
    """True when the real `mmcv._ext` (full mmcv) is importable."""
    mod = sys.modules.get("mmcv._ext")
    if mod is not None:
        return not getattr(mod, STANDIN_FLAG, False)
    return importlib.util.find_spec("mmcv._ext") is not None


def _check_pkg_resources() -> None:
    # mmengine resolves `mmseg::` config paths (and a few version checks) through it;
    # setuptools >= 81 no longer ships it.
    if importlib.util.find_spec("pkg_resources") is None:
        raise BenchError(
            "segmentation needs pkg_resources (mmengine uses it): install "
            "'setuptools>=77.0.3,<81' (setuptools 81+ dropped pkg_resources)"
        )


_done = False


def ensure() -> None:
    """Make mmseg importable here; idempotent, and a no-op with full mmcv installed."""
    global _done
    if _done:
        return
    for pkg, hint in (
        ("mmcv", "mmcv-lite==2.1.0"),
        ("mmengine", "mmengine==0.10.7"),
        ("mmseg", "mmsegmentation==1.2.2"),
        ("ftfy", "ftfy"),
        ("regex", "regex"),
    ):
        if importlib.util.find_spec(pkg) is None:
            # mmseg imports ftfy and regex without declaring them as dependencies.
            raise BenchError(f"segmentation needs the Python package {pkg!r}: pip install {hint}")
    _check_pkg_resources()
    if not has_compiled_ops():
        sys.modules["mmcv._ext"] = _standin()
    _done = True
