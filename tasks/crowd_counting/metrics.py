"""Crowd-counting loss and evaluation, in the form the engine's `Objective` takes.

Metrics: MAE and RMSE of the predicted count (the density map's sum) against the annotated
point count. Crowd-counting papers call the RMSE "MSE" (CSRNet: Part A 68.2 / 115.0, Part B
10.6 / 16.0, paper.md); records keep that name only as a documented alias (MSE_ALIAS_NOTE).

Loss: per image, the sum of squared errors between the predicted map and the target map
sum-pooled to the output stride, averaged over the batch: CSRNet's sum-of-squares loss
(its batch was 1, where the two agree).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from bench.engine import Objective
from bench.engine.loop import evaluate_sums
from bench.util.errors import BenchError

METRIC = "mae"
MSE_ALIAS_NOTE = (
    "crowd-counting papers (CSRNet and after) report this RMSE under the name 'MSE'; "
    "no mean squared error is reported here"
)


def density_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors per image, averaged over the batch (CSRNet's loss at batch 1)."""
    if pred.shape != target.shape:
        raise BenchError(
            f"density map shapes differ: prediction {list(pred.shape)}, target {list(target.shape)}"
        )
    return (pred - target).pow(2).sum() / pred.shape[0]


def evaluate_counts(
    model: torch.nn.Module,
    dataset: Dataset,
    device: torch.device | str,
    batch_size: int = 1,
    **options: Any,
) -> dict[str, Any]:
    """MAE and RMSE of predicted counts (map sums) against annotated counts, whole images.

    Always batch 1 (images differ in size; `batch_size` is accepted for the engine's
    signature and ignored). Also the mean per-image loss. `options`: those of
    `bench.engine.loop.evaluate_sums` (workers, sharding under torchrun, AMP, channels-last).
    """
    del batch_size
    device = torch.device(device)

    def score(pred: torch.Tensor, batch: Any) -> list[torch.Tensor | float]:
        _, den, count = batch
        pred = pred.double()
        err = pred.sum() - count.to(device).double().sum()
        return [err.abs(), err * err, density_loss(pred, den.to(device).double()), 1.0, pred.sum()]

    abs_err, sq_err, loss, n, pred_sum = evaluate_sums(
        model, dataset, device, score, 5, batch_size=1, **options
    )
    if n == 0:
        raise BenchError("cannot evaluate on an empty split")
    return {
        "mae": abs_err / n,
        "rmse": math.sqrt(sq_err / n),
        "loss": loss / n,
        "mean_pred_count": pred_sum / n,
        "n": int(n),
    }


OBJECTIVE = Objective(
    loss=density_loss,
    evaluate=evaluate_counts,
    metric=METRIC,
    higher_is_better=False,
    train_accuracy=False,
)
