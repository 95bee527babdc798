"""A tiny ShanghaiTech-format data set from real point annotations: the embedded default.

Source: the stardist wheel (`pip install --no-deps stardist==0.9.2`; never imported) ships
data/images/img2d.tif, a real 512 x 512 fluorescence image of nuclei, and mask2d.tif, its
125 labelled instances. Each instance's centroid is one "head". The image is tiled into
a 4 x 4 grid of 128 x 128 images (one tile per row, on an anti-diagonal, goes to test:
12 train, 4 test) and
written per part as IMG_<n>.jpg + GT_IMG_<n>.mat with ShanghaiTech's nesting
(image_info{1}.location, N x 2 (x, y), and .number). Part A, like the real one, mixes in
grayscale JPEGs (every fourth image) and sizes that are not multiples of 8 (every second
image loses its last 3 rows; the points there leave the annotation with them); Part B is
all RGB 128 x 128. A marker file, ticketbench-sample.json, records all this; the task's
"auto" protocol picks the short CPU protocol for data carrying it.

    python -m tasks.crowd_counting.sample DIR     # then --data-root DIR
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.io import savemat

from bench.util.errors import BenchError
from bench.util.io import atomic_write_json

STARDIST_VERSION = "0.9.2"
MARKER = "ticketbench-sample.json"
GRID = 4  # 4 x 4 tiles of the 512 x 512 image
TRAIN_TILES = GRID * GRID - GRID  # the anti-diagonal's tiles are the test images


def stardist_images_dir() -> Path:
    """stardist/data/images, found without importing stardist (it needs TensorFlow)."""
    spec = importlib.util.find_spec("stardist")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        d = Path(loc) / "data" / "images"
        if (d / "img2d.tif").is_file() and (d / "mask2d.tif").is_file():
            return d
    raise BenchError(
        "sample crowd data needs the stardist wheel's images: "
        f"pip install --no-deps stardist=={STARDIST_VERSION}"
    )


@cache
def nuclei() -> tuple[np.ndarray, np.ndarray]:
    """(512 x 512 uint8 image, 125 x 2 float64 (x, y) centroids of the labelled nuclei)."""
    d = stardist_images_dir()
    with Image.open(d / "img2d.tif") as im:
        raw = np.asarray(im, dtype=np.float64)
    with Image.open(d / "mask2d.tif") as im:
        labels = np.asarray(im).astype(np.int64)
    image = np.round(raw / raw.max() * 255.0).astype(np.uint8)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    rc = np.asarray(ndimage.center_of_mass(labels > 0, labels, ids), dtype=np.float64)
    return image, rc[:, ::-1].copy()  # (row, col) -> (x, y)


def write_gt_mat(path: Path, points: np.ndarray) -> None:
    """A GT_IMG_n.mat as ShanghaiTech nests it: image_info{1,1} = struct(location, number)."""
    struct = np.empty((1, 1), dtype=[("location", "O"), ("number", "O")])
    struct[0, 0]["location"] = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    struct[0, 0]["number"] = np.array([[float(len(points))]])
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = struct
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"image_info": cell})


def tiles(part: str) -> list[tuple[str, np.ndarray, np.ndarray, bool]]:
    """(split, image HxW uint8, points (x, y), grayscale?) for every tile of `part`."""
    image, points = nuclei()
    size = image.shape[0] // GRID
    out = []
    for i in range(GRID * GRID):
        r, c = divmod(i, GRID)
        h = size - 3 if part == "A" and i % 2 else size
        tile = image[r * size : r * size + h, c * size : c * size + size]
        x, y = points[:, 0] - c * size, points[:, 1] - r * size
        keep = (x >= 0) & (x < size) & (y >= 0) & (y < h)
        split = "test" if (r + c) % GRID == GRID - 1 else "train"  # one per row
        gray = part == "A" and i % 4 == 0
        out.append((split, tile, np.stack([x[keep], y[keep]], axis=1), gray))
    return out


def write_sample(
    root: str | Path,
    *,
    parts: tuple[str, ...] = ("A", "B"),
    gt_dir: str = "ground_truth",
) -> Path:
    """Write part_A/ and part_B/ (see the module docstring) under `root`; returns root."""
    root = Path(root)
    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        numbers = {"train": 0, "test": 0}
        for split, tile, pts, gray in tiles(part):
            numbers[split] += 1
            name = f"IMG_{numbers[split]}"
            base = root / f"part_{part}" / f"{split}_data"
            (base / "images").mkdir(parents=True, exist_ok=True)
            pic = Image.fromarray(tile, "L")
            (pic if gray else pic.convert("RGB")).save(base / "images" / f"{name}.jpg", quality=95)
            write_gt_mat(base / gt_dir / f"GT_{name}.mat", pts)
        counts[f"part_{part}"] = numbers
    atomic_write_json(
        root / MARKER,
        {
            "what": "tiny ShanghaiTech-format sample (tasks/crowd_counting/sample.py)",
            "source": f"stardist=={STARDIST_VERSION} data/images/img2d.tif + mask2d.tif",
            "heads": "centroids of the 125 labelled nuclei",
            "tiles": f"{GRID}x{GRID} of 128x128; test: tiles (r, c) with r + c = {GRID - 1}",
            "images": counts,
            "ground_truth_dir": gt_dir,
        },
    )
    return root


def ensure_sample(root: str | Path) -> Path:
    """`root`, writing the sample there first unless its marker file is present."""
    root = Path(root)
    if not (root / MARKER).is_file():
        write_sample(root)
    return root


def is_sample(part_dir: Path) -> bool:
    """Whether a part folder belongs to this sample (its root holds the marker)."""
    return (Path(part_dir).parent / MARKER).is_file()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tasks.crowd_counting.sample DIR")
    print(write_sample(sys.argv[1]))
