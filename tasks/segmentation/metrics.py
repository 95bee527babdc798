"""IoUMetric that also returns the per-class IoU and accuracy it otherwise only logs."""

from __future__ import annotations

import numpy as np

from tasks.segmentation import compat

compat.ensure()

from mmseg.evaluation import IoUMetric  # noqa: E402
from mmseg.registry import METRICS  # noqa: E402

CLASS_IOU = "IoU."
CLASS_ACC = "Acc."


@METRICS.register_module()
class TicketIoUMetric(IoUMetric):
    """mmseg's IoUMetric (aAcc, mIoU, mAcc in percent) plus "IoU.<class>" and
    "Acc.<class>" per class, for the classes present in labels or predictions."""

    def compute_metrics(self, results: list) -> dict[str, float]:
        metrics = dict(super().compute_metrics(results))
        if self.format_only or not results:
            return metrics
        inter, union, pred, label = (sum(parts) for parts in zip(*results))
        per_class = self.total_area_to_metrics(inter, union, pred, label, ["mIoU"])
        for name, iou, acc in zip(self.dataset_meta["classes"], per_class["IoU"], per_class["Acc"]):
            # Classes absent from labels and predictions (NaN) are left out, not faked.
            if np.isfinite(iou):
                metrics[CLASS_IOU + name] = float(np.round(float(iou) * 100, 2))
            if np.isfinite(acc):
                metrics[CLASS_ACC + name] = float(np.round(float(acc) * 100, 2))
        return metrics
