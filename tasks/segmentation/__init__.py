"""Semantic segmentation transfer: a ticket backbone inside MMSegmentation decoders.

Import `tasks.segmentation.task` to register the "segmentation" task (cheap: mmseg and
mmcv are imported only when a run starts, through `tasks.segmentation.compat`). Only this
package imports mmseg/mmcv.
"""
