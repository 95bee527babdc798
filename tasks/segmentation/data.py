"""Cityscapes on disk: layout checks, labelIds-only detection and labelIds -> trainIds.

mmseg's CityscapesDataset reads leftImg8bit/{split}/CITY/*_leftImg8bit.png with
gtFine/{split}/CITY/*_gtFine_labelTrainIds.png (19 classes, 255 = ignore). The official
download ships *_gtFine_labelIds.png (34 ids) and polygons; training on labelIds gives
near-zero mIoU, so a labelIds-only tree is refused with a one-line hint, and
`convert_label_ids` writes the trainIds files next to them (the Cityscapes label table,
as in cityscapesscripts/helpers/labels.py). No mmseg import here: checks stay cheap.

Run `python -m tasks.segmentation.data DIR` to convert a tree in place.
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bench.util.errors import BenchError
from bench.util.io import atomic_write_bytes

IMG_DIR = "leftImg8bit"
ANN_DIR = "gtFine"
IMG_SUFFIX = "_leftImg8bit.png"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_ID_SUFFIX = "_gtFine_labelIds.png"
SPLITS = ("train", "val")
IGNORE_INDEX = 255

# (name, labelId, trainId) of the Cityscapes label definition; trainId 255 = not evaluated.
# "license plate" (id -1) never occurs in labelIds PNGs and is left out.
CITYSCAPES_LABELS: tuple[tuple[str, int, int], ...] = (
    ("unlabeled", 0, 255),
    ("ego vehicle", 1, 255),
    ("rectification border", 2, 255),
    ("out of roi", 3, 255),
    ("static", 4, 255),
    ("dynamic", 5, 255),
    ("ground", 6, 255),
    ("road", 7, 0),
    ("sidewalk", 8, 1),
    ("parking", 9, 255),
    ("rail track", 10, 255),
    ("building", 11, 2),
    ("wall", 12, 3),
    ("fence", 13, 4),
    ("guard rail", 14, 255),
    ("bridge", 15, 255),
    ("tunnel", 16, 255),
    ("pole", 17, 5),
    ("polegroup", 18, 255),
    ("traffic light", 19, 6),
    ("traffic sign", 20, 7),
    ("vegetation", 21, 8),
    ("terrain", 22, 9),
    ("sky", 23, 10),
    ("person", 24, 11),
    ("rider", 25, 12),
    ("car", 26, 13),
    ("truck", 27, 14),
    ("bus", 28, 15),
    ("caravan", 29, 255),
    ("trailer", 30, 255),
    ("train", 31, 16),
    ("motorcycle", 32, 17),
    ("bicycle", 33, 18),
)
LABEL_IDS: dict[str, int] = {name: lid for name, lid, _ in CITYSCAPES_LABELS}
TRAIN_CLASSES: tuple[str, ...] = tuple(
    name for name, _, tid in sorted(CITYSCAPES_LABELS, key=lambda r: r[2]) if tid != 255
)


def id_to_train_id_lut() -> np.ndarray:
    """A 256-entry lookup table labelId -> trainId (unknown ids -> 255)."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for _, lid, tid in CITYSCAPES_LABELS:
        lut[lid] = tid
    return lut


def _images(root: Path, split: str) -> list[Path]:
    return sorted((root / IMG_DIR / split).rglob(f"*{IMG_SUFFIX}"))


def _annotation(root: Path, split: str, image: Path, suffix: str) -> Path:
    rel = image.relative_to(root / IMG_DIR / split)
    return root / ANN_DIR / split / rel.parent / (image.name[: -len(IMG_SUFFIX)] + suffix)


def find_root(data_root: Path) -> Path:
    """The Cityscapes folder: `data_root` itself, or its cityscapes/ (a shared data root)."""
    root = Path(data_root)
    for cand in (root, root / "cityscapes", root / "Cityscapes"):
        if (cand / IMG_DIR).is_dir() or (cand / ANN_DIR).is_dir():
            return cand
    return root


def cityscapes_missing(root: Path | None, splits: tuple[str, ...] = SPLITS) -> str | None:
    """None when `root` (or root/cityscapes) is a usable Cityscapes tree, else one line
    saying what is wrong."""
    if root is None:
        return "cityscapes: no --data-root given (expected a folder with leftImg8bit/ and gtFine/)"
    given, root = Path(root), find_root(root)
    if not root.is_dir():
        return f"cityscapes: {root} is not a folder (expected leftImg8bit/ and gtFine/ inside)"
    for split in splits:
        for sub in (IMG_DIR, ANN_DIR):
            if not (root / sub / split).is_dir():
                also = "" if root != given else f"; also looked in {given / 'cityscapes'}"
                return f"cityscapes: {root / sub / split} is missing (expected CITY/ folders{also})"
        images = _images(root, split)
        if not images:
            return f"cityscapes: no *{IMG_SUFFIX} under {root / IMG_DIR / split}"
        lacking = [p for p in images if not _annotation(root, split, p, TRAIN_ID_SUFFIX).is_file()]
        if not lacking:
            continue
        if all(_annotation(root, split, p, LABEL_ID_SUFFIX).is_file() for p in lacking):
            return (
                f"cityscapes: {root / ANN_DIR / split} has *{LABEL_ID_SUFFIX} but not "
                f"*{TRAIN_ID_SUFFIX} for {len(lacking)} of {len(images)} images (training on "
                f"labelIds gives near-zero mIoU); convert once with: "
                f"python -m tasks.segmentation.data {root}"
            )
        first = _annotation(root, split, lacking[0], TRAIN_ID_SUFFIX)
        return f"cityscapes: {len(lacking)} {split} images lack a label, e.g. {first}"
    for split in splits:
        pairs = [(p, _annotation(root, split, p, TRAIN_ID_SUFFIX)) for p in _images(root, split)]
        if problem := _labels_problem(tuple((i, a, _stamp(i), _stamp(a)) for i, a in pairs)):
            return f"cityscapes: {problem}"
    return None


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@functools.cache
def _labels_problem(pairs: tuple[tuple[Path, Path, tuple, tuple], ...]) -> str | None:
    """The first (image, trainIds label, their stamps) that would fail training, checked
    once per process and file version: every label is decoded once (a 40k-iteration run
    decodes each about 100 times)."""
    with ThreadPoolExecutor(4) as pool:  # PNG decoding releases the GIL
        problems = pool.map(lambda pair: _label_problem(*pair[:2]), pairs)
        return next((p for p in problems if p), None)


VALID_TRAIN_IDS = np.zeros(256, dtype=bool)
VALID_TRAIN_IDS[[tid for _, _, tid in CITYSCAPES_LABELS]] = True


def _label_problem(image: Path, label: Path) -> str | None:
    """Why `label` cannot train `image`: either unreadable, the label not single-channel
    8-bit, of another size than the image, or with values that are no trainId (0..18, 255 =
    ignore); None when fine."""
    path = image
    try:
        with Image.open(image) as im:
            size = im.size  # the header only: decoding every photo would cost minutes
        path = label
        with Image.open(label) as lab:
            if lab.mode not in ("L", "P"):
                return f"{label}: expected a single-channel 8-bit PNG of trainIds, not {lab.mode}"
            if lab.size != size:
                w, h = lab.size
                return f"{label}: {w}x{h}, but its image {image.name} is {size[0]}x{size[1]}"
            ids = np.asarray(lab)
    except Exception as e:  # truncated, empty, not an image: name the file
        return f"{path}: unreadable ({' '.join(str(e).split()) or type(e).__name__})"
    present = np.bincount(ids.ravel(), minlength=256).astype(bool)
    bad = np.flatnonzero(present & ~VALID_TRAIN_IDS)
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5])
        return f"{label}: label values {shown} are no trainIds (expected 0..18, 255 = ignore)"
    return None


def _convert_one(src: Path, dst: Path, lut: np.ndarray) -> None:
    with Image.open(src) as im:
        if im.mode not in ("L", "P", "I", "I;16"):
            raise BenchError(f"{src}: expected a single-channel labelIds PNG, got mode {im.mode}")
        ids = np.asarray(im)
    if ids.min() < 0 or ids.max() > 255:
        raise BenchError(f"{src}: label ids outside 0..255")
    buf = io.BytesIO()
    Image.fromarray(lut[ids.astype(np.int64)]).save(buf, format="PNG")
    atomic_write_bytes(dst, buf.getvalue())  # a crash never leaves a truncated label map


def _label_id_files(root: Path, splits: tuple[str, ...]) -> Iterator[Path]:
    for split in splits:
        yield from sorted((root / ANN_DIR / split).rglob(f"*{LABEL_ID_SUFFIX}"))


def convert_label_ids(
    root: Path, *, splits: tuple[str, ...] = SPLITS, overwrite: bool = False, workers: int = 4
) -> int:
    """Write *_gtFine_labelTrainIds.png beside every *_gtFine_labelIds.png; returns how many.

    Existing trainIds files are kept unless `overwrite`.
    """
    root = Path(root)
    if not (root / ANN_DIR).is_dir():
        raise BenchError(f"cityscapes: {root / ANN_DIR} is missing")
    lut = id_to_train_id_lut()
    jobs = []
    for src in _label_id_files(root, splits):
        dst = src.with_name(src.name[: -len(LABEL_ID_SUFFIX)] + TRAIN_ID_SUFFIX)
        if overwrite or not dst.exists():
            jobs.append((src, dst))
    if not jobs and not any(True for _ in _label_id_files(root, splits)):
        raise BenchError(f"cityscapes: no *{LABEL_ID_SUFFIX} under {root / ANN_DIR}")
    # PNG decode/encode release the GIL, so threads give a real speed-up here.
    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(lambda job: _convert_one(*job, lut), jobs))
    return len(jobs)


def main(argv: list[str] | None = None) -> int:
    """`python -m tasks.segmentation.data DIR`: labelIds -> labelTrainIds, in place."""
    p = argparse.ArgumentParser(
        prog="python -m tasks.segmentation.data",
        description="Write Cityscapes *_gtFine_labelTrainIds.png from *_gtFine_labelIds.png.",
    )
    p.add_argument("root", type=Path, help="Cityscapes folder holding gtFine/")
    p.add_argument("--overwrite", action="store_true", help="rewrite existing trainIds files")
    p.add_argument("--workers", type=int, default=4, help="threads")
    args = p.parse_args(argv)
    try:
        n = convert_label_ids(args.root, overwrite=args.overwrite, workers=args.workers)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} *{TRAIN_ID_SUFFIX} files under {args.root / ANN_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
