"""mmcv-lite compatibility: mmseg imports, compiled ops fail clearly, full mmcv is left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tasks.segmentation import compat

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess:
    # A fresh interpreter: what matters is the first mmseg import of a process.
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_mmseg_models_import_in_a_fresh_process() -> None:
    r = _python(
        "from tasks.segmentation import compat; compat.ensure()\n"
        "import mmseg.models, mmseg.datasets, mmseg.evaluation\n"
        "from mmseg.registry import MODELS\n"
        "import tasks.segmentation.backbone\n"
        "for name in ('EncoderDecoder', 'FCNHead', 'PSPHead', 'ASPPHead',\n"
        "             'DepthwiseSeparableASPPHead', 'UPerHead', 'TicketResNet'):\n"
        "    assert MODELS.get(name) is not None, name\n"
        "print('ok')\n"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")


def test_compiled_op_raises_a_clear_error() -> None:
    compat.ensure()
    if compat.has_compiled_ops():
        pytest.skip("full mmcv is installed: its compiled ops are real")
    import torch
    from mmcv.ops import sigmoid_focal_loss

    with pytest.raises(compat.CompiledOpUnavailable, match="mmcv-lite has no mmcv._ext"):
        sigmoid_focal_loss(torch.randn(2, 3), torch.tensor([0, 1]), 2.0, 0.25)


def test_pure_python_mmcv_op_still_works() -> None:
    # point_sample is grid_sample in Python: importing it needed the stand-in, running it not.
    compat.ensure()
    import torch
    from mmcv.ops import point_sample

    out = point_sample(torch.arange(16.0).view(1, 1, 4, 4), torch.full((1, 1, 2), 0.5))
    assert out.shape == (1, 1, 1)
    assert torch.isfinite(out).all()


def test_does_nothing_when_a_real_ext_module_is_present() -> None:
    # With full mmcv, mmcv._ext is a real module: ensure() must keep it.
    r = _python(
        "import sys, types\n"
        "real = types.ModuleType('mmcv._ext'); real.nms = lambda *a: 'real'\n"
        "sys.modules['mmcv._ext'] = real\n"
        "from tasks.segmentation import compat; compat.ensure()\n"
        "assert sys.modules['mmcv._ext'] is real\n"
        "assert compat.has_compiled_ops()\n"
        "print('kept')\n"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "kept"
