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
from torch.utils.data import DataLoader, Dataset, Subset

from bench.engine import Objective
from bench.engine.distributed import all_reduce_sum, dist_info
from bench.errors import BenchError

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


@torch.no_grad()
def evaluate_counts(
    model: torch.nn.Module,
    dataset: Dataset,
    device: torch.device | str,
    batch_size: int = 1,
    *,
    num_workers: int = 0,
    distributed: bool | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> dict[str, Any]:
    """MAE and RMSE of predicted counts (map sums) against annotated counts, whole images.

    Always batch 1 (images differ in size; `batch_size` is accepted for the engine's
    signature and ignored). Also the mean per-image loss. Under torchrun each rank scores
    a strided shard and the sums are all-reduced (every rank must call it).
    """
    del batch_size
    device = torch.device(device)
    info = dist_info()
    shard = info.enabled if distributed is None else distributed and info.enabled
    data = Subset(dataset, range(info.rank, len(dataset), info.world_size)) if shard else dataset
    loader = DataLoader(
        data,
        batch_size=1,
        shuffle=False,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),
    )
    was_training = model.training
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # |e|, e^2, loss, n, pred
    try:
        for x, den, count in loader:
            x = x.to(device, memory_format=torch.channels_last) if channels_last else x.to(device)
            den = den.to(device)
            if amp_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=amp_dtype):
                    pred = model(x)
            else:
                pred = model(x)
            pred = pred.double()
            err = pred.sum() - count.to(device).double().sum()
            sums += torch.stack(
                [
                    err.abs(),
                    err * err,
                    density_loss(pred, den.double()),
                    sums.new_tensor(1.0),
                    pred.sum(),
                ]
            )
    finally:
        model.train(was_training)
    if shard:
        all_reduce_sum(sums)
    abs_err, sq_err, loss, n, pred_sum = sums.tolist()
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
