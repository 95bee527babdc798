"""Semantic segmentation transfer: a ticket backbone inside MMSegmentation decoders.

Import `tasks.segmentation.task` to register the "segmentation" task (cheap: mmseg and
mmcv are imported only when a run starts, through `tasks.segmentation.compat`). Only this
package imports mmseg/mmcv. `tasks.segmentation.options` declares its `--opt` keys.
"""

# What `bench list datasets` says about each dataset (tasks.segmentation.data reads them).
LAYOUTS = {
    "cityscapes": "<data-root> or <data-root>/cityscapes with leftImg8bit/{train,val}/CITY/"
    "*_leftImg8bit.png and gtFine/{train,val}/CITY/*_gtFine_labelTrainIds.png (labelIds only: "
    "python -m tasks.segmentation.data DIR converts them)"
}
