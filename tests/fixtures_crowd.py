"""Writers of tiny ShanghaiTech-format sets for the crowd-counting tests.

The images and head points are real: the stardist wheel's nuclei image and the centroids
of its 125 labelled instances (`pip install --no-deps stardist==0.9.2`; never imported),
tiled and written by `tasks.crowd_counting.sample` as IMG_n.jpg + GT_IMG_n.mat with
ShanghaiTech's nesting. The helpers here only damage copies in the ways the tests need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import savemat

from tasks.crowd_counting.sample import write_gt_mat, write_sample


def write_crowd_root(root: Path, *, gt_dir: str = "ground_truth") -> Path:
    """part_A/ and part_B/ under `root`, ground truth in `gt_dir` (either spelling)."""
    return write_sample(root, gt_dir=gt_dir)


def split_dir(root: Path, part: str = "B", split: str = "train") -> Path:
    return root / f"part_{part}" / f"{split}_data"


def write_mat_without_image_info(path: Path) -> None:
    """A valid .mat whose variable has another name (what a wrong file looks like)."""
    savemat(path, {"annPoints": np.array([[1.0, 2.0]])})


def write_points(path: Path, points: np.ndarray) -> None:
    """Replace an annotation with `points` (x, y), ShanghaiTech nesting."""
    write_gt_mat(path, points)
