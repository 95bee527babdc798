"""Mixed precision on CPU: the autocast and GradScaler code paths CUDA runs, exercised with
CPU autocast (bf16, and fp16 with its GradScaler and the scaler's resume)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_engine import TinyNet, blobs, hp_small, quiet

from bench.engine import load_checkpoint, train


def _train(path: Path, dtype: str, epochs: int, stop: int | None = None) -> tuple[dict, set]:
    """Train TinyNet (fresh weights from seed 0); the dtypes its convolution ran in."""
    torch.manual_seed(0)
    model, seen = TinyNet(10), set()
    model.features[0].register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    hp = hp_small(epochs=epochs, batch_size=32, amp=True, amp_dtype=dtype)
    res = train(model, blobs(192), {"val": blobs(64, seed=1)}, hp, path, "cpu",
                select_on="val", log=quiet, stop_after_epoch=stop, progress=False)  # fmt: skip
    return {**res, "state": {k: v.clone() for k, v in model.state_dict().items()}}, seen


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_amp_trains_under_autocast_on_cpu(tmp_path: Path, dtype: str) -> None:
    res, seen = _train(tmp_path, dtype, epochs=2)
    want = torch.bfloat16 if dtype == "bf16" else torch.float16
    assert seen == {want}  # training and evaluation forwards both ran in the low precision
    losses = [r["train"]["loss"] for r in res["history"]]
    assert losses[-1] < losses[0] and res["final"]["val"]["top1"] > 20  # chance: 10
    scaler = load_checkpoint(tmp_path / "latest.pt")["scaler"]
    assert (scaler is not None) == (dtype == "fp16")  # fp16 carries a GradScaler
    if scaler is not None:
        assert scaler["scale"] > 0 and scaler["_growth_tracker"] >= 0


def test_fp16_resume_restores_the_scaler_bit_exactly(tmp_path: Path) -> None:
    ref, _ = _train(tmp_path / "a", "fp16", epochs=2)
    _train(tmp_path / "b", "fp16", epochs=2, stop=1)
    res, _ = _train(tmp_path / "b", "fp16", epochs=2)
    assert res["resumed_from"] == 1
    assert all(torch.equal(ref["state"][k], res["state"][k]) for k in ref["state"])
    a, b = (load_checkpoint(tmp_path / d / "latest.pt")["scaler"] for d in ("a", "b"))
    assert a == b


@pytest.mark.slow  # inductor compiles C++ kernels: a minute on 2 cores
def test_compiled_training_compiles_once_and_learns(tmp_path: Path) -> None:
    """--compile (torch.compile of the training forward) on CPU: one compile for the run,
    not one per epoch or per evaluation."""
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    hp = hp_small(epochs=2, batch_size=32, compile=True)
    data = blobs(192)  # 6 full batches: one input shape
    res = train(TinyNet(10), data, {"val": blobs(64, seed=1)}, hp, tmp_path, "cpu",
                select_on="val", log=quiet, progress=False)  # fmt: skip
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert res["complete"] and res["final"]["val"]["top1"] > 20
    assert frames == 1, f"{frames} graphs compiled"
    torch._dynamo.reset()
