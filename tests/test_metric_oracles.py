"""The suite's segmentation metric against numbers worked out by hand.

TicketIoUMetric (tasks/segmentation/metrics.py) is fed, the way mmengine's val loop feeds
it (Evaluator.process(data_samples, data_batch) with SegDataSample objects, then
Evaluator.evaluate(size)), a two-image prediction whose confusion matrix is below.

mmseg's IoUMetric (mmseg/evaluation/metrics/iou_metric.py, mmseg 1.2.2):
  * pixels whose ground truth is ignore_index (255) are dropped, whatever was predicted;
  * IoU_c = inter_c / union_c, Acc_c = inter_c / gt_c; 0/0 gives NaN;
  * mIoU = nanmean(IoU) and mAcc = nanmean(Acc): a class absent from both prediction and
    ground truth (union 0) is left out of mIoU; a class predicted but absent from the
    ground truth has IoU 0 (it counts in mIoU) and Acc NaN (left out of mAcc);
  * aAcc = sum(inter) / sum(gt); all in percent, rounded to 2 decimals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.segmentation import compat

compat.ensure()

from mmengine.evaluator import Evaluator  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402
from mmseg.registry import METRICS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

from tasks.segmentation.metrics import TicketIoUMetric  # noqa: E402

X = 255  # ignore_index
CLASSES = ("c0", "c1", "c2", "c3", "c4")

# Image A, 3 x 4.                  Image B, 2 x 3.
GT_A = [[0, 0, 0, 1], [0, 0, 1, 1], [2, X, X, 1]]
PRED_A = [[0, 0, 1, 1], [0, 2, 1, 1], [2, 4, 3, 3]]
GT_B = [[2, 2, X], [1, 2, 0]]
PRED_B = [[2, 0, 4], [1, 2, 2]]

# By hand, pixel by pixel ((row, col) gt->pred), ignore pixels dropped:
#   A: (0,0) 0->0  (0,1) 0->0  (0,2) 0->1  (0,3) 1->1
#      (1,0) 0->0  (1,1) 0->2  (1,2) 1->1  (1,3) 1->1
#      (2,0) 2->2  (2,1) X (pred 4, dropped)  (2,2) X (pred 3, dropped)  (2,3) 1->3
#   B: (0,0) 2->2  (0,1) 2->0  (0,2) X (pred 4, dropped)
#      (1,0) 1->1  (1,1) 2->2  (1,2) 0->2
# Confusion matrix over both images, rows = ground truth, columns = prediction:
#            p0 p1 p2 p3 p4 | gt total
#      gt0 [  3, 1, 2, 0, 0 ] 6
#      gt1 [  0, 4, 0, 1, 0 ] 5
#      gt2 [  1, 0, 3, 0, 0 ] 4
#      gt3 [  0, 0, 0, 0, 0 ] 0
#      gt4 [  0, 0, 0, 0, 0 ] 0
#  pred total 4  5  5  1  0   = 15 evaluated pixels
CONFUSION = np.array(
    [
        [3, 1, 2, 0, 0],
        [0, 4, 0, 1, 0],
        [1, 0, 3, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
)
# inter = diagonal = [3, 4, 3, 0, 0]; union = pred + gt - inter:
#   c0: 4 + 6 - 3 = 7  -> IoU 3/7 = 0.428571   Acc 3/6 = 0.5
#   c1: 5 + 5 - 4 = 6  -> IoU 4/6 = 0.666667   Acc 4/5 = 0.8
#   c2: 5 + 4 - 3 = 6  -> IoU 3/6 = 0.5        Acc 3/4 = 0.75
#   c3: 1 + 0 - 0 = 1  -> IoU 0/1 = 0          Acc 0/0 = NaN (only predicted: out of mAcc)
#   c4: 0 + 0 - 0 = 0  -> IoU NaN, Acc NaN (predicted only on ignore pixels: out of both)
# mIoU = (3/7 + 2/3 + 1/2 + 0) / 4 = 1.595238 / 4 = 0.398810 -> 39.88
# mAcc = (0.5 + 0.8 + 0.75) / 3    = 2.05 / 3     = 0.683333 -> 68.33
# aAcc = (3 + 4 + 3) / 15          = 10 / 15      = 0.666667 -> 66.67
HAND = {
    "aAcc": 66.67,
    "mIoU": 39.88,
    "mAcc": 68.33,
    "IoU.c0": 42.86,
    "IoU.c1": 66.67,
    "IoU.c2": 50.0,
    "IoU.c3": 0.0,
    "Acc.c0": 50.0,
    "Acc.c1": 80.0,
    "Acc.c2": 75.0,
}


def _sample(pred: list, gt: list) -> SegDataSample:
    s = SegDataSample()
    s.pred_sem_seg = PixelData(data=torch.tensor(pred, dtype=torch.int64)[None])
    s.gt_sem_seg = PixelData(data=torch.tensor(gt, dtype=torch.uint8)[None])  # as a PNG loads
    return s


def _evaluator() -> Evaluator:
    # Built from mmseg's registry as configs.segmentation_config names it (the runner's
    # default scope is mmseg): dict(type="TicketIoUMetric", iou_metrics=["mIoU"]).
    metric = METRICS.build(dict(type="TicketIoUMetric", iou_metrics=["mIoU"]))
    assert type(metric) is TicketIoUMetric and metric.ignore_index == X
    evaluator = Evaluator([metric])
    evaluator.dataset_meta = {"classes": CLASSES}
    return evaluator


def test_hand_confusion_matrix_is_right() -> None:
    # Guards the arithmetic above (plain numpy, no mmseg): the matrix is the data's.
    gt = np.concatenate([np.ravel(GT_A), np.ravel(GT_B)])
    pred = np.concatenate([np.ravel(PRED_A), np.ravel(PRED_B)])
    keep = gt != X
    cm = np.bincount(gt[keep] * 5 + pred[keep], minlength=25).reshape(5, 5)
    np.testing.assert_array_equal(cm, CONFUSION)


def test_ticket_iou_metric_equals_the_hand_values() -> None:
    evaluator = _evaluator()
    evaluator.process(data_samples=[_sample(PRED_A, GT_A)], data_batch={})
    evaluator.process(data_samples=[_sample(PRED_B, GT_B)], data_batch={})
    metrics = evaluator.evaluate(2)
    assert set(metrics) == set(HAND)  # no IoU.c4 / Acc.c3 / Acc.c4: NaN, left out
    for key, value in HAND.items():
        assert float(metrics[key]) == pytest.approx(value, abs=1e-4), key


def test_one_batch_of_two_equals_two_batches_of_one() -> None:
    # The sums run over all pixels of the split, not a mean of per-image scores.
    evaluator = _evaluator()
    evaluator.process(data_samples=[_sample(PRED_A, GT_A), _sample(PRED_B, GT_B)], data_batch={})
    metrics = evaluator.evaluate(2)
    assert {k: round(float(v), 2) for k, v in metrics.items()} == HAND
