"""ShanghaiTech Part A / Part B on disk: where the parts are, their images and head points.

Layout (Zhang et al. 2016, as distributed):
    <part>/{train,test}_data/images/IMG_<n>.jpg
    <part>/{train,test}_data/ground_truth/GT_IMG_<n>.mat    (some copies: ground-truth/)
where <part> is part_A or part_B, found under the data root directly, under
ShanghaiTech/, or as part_X_final under ShanghaiTech_Crowd_Counting_Dataset/ (the
original archive). Head points are loadmat(f)["image_info"][0, 0][0, 0]["location"],
an N x 2 array of (x, y) pixel coordinates. Some Part A images are grayscale: they are
read as RGB.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import loadmat

from bench.util.errors import BenchError
from bench.util.fingerprint import text_sha256
from bench.util.paths import default_data_root

DATASETS = {"shanghaitech-a": "A", "shanghaitech-b": "B"}
SPLITS = ("train", "test")
GT_DIRS = ("ground_truth", "ground-truth")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def part_candidates(root: Path, part: str) -> list[Path]:
    """Where part `part` ("A"/"B") may live under `root`, most common layout first."""
    names = (f"part_{part}", f"part_{part}_final")
    parents = (root, root / "ShanghaiTech", root / "ShanghaiTech_Crowd_Counting_Dataset")
    return [p / n for p in parents for n in names]


def _part_of(dataset: str) -> str:
    try:
        return DATASETS[dataset]
    except KeyError:
        known = ", ".join(DATASETS)
        raise BenchError(f"unknown crowd counting dataset {dataset!r} (known: {known})") from None


def find_part(dataset: str, data_root: Path | None) -> Path:
    """The part_X folder of `dataset` under `data_root`; BenchError saying what is expected."""
    part = _part_of(dataset)
    root = Path(data_root) if data_root is not None else default_data_root()
    for cand in part_candidates(root, part):
        if (cand / "train_data").is_dir() or (cand / "test_data").is_dir():
            return cand
    raise BenchError(
        f"{dataset}: no part_{part}/{{train,test}}_data under {root} (expected "
        f"{root}/part_{part}/train_data/images/IMG_1.jpg and .../ground_truth/GT_IMG_1.mat; "
        "also looked under ShanghaiTech/ and for part_X_final)"
    )


@dataclass(frozen=True)
class Sample:
    """One image and its annotation file."""

    image: Path
    annotation: Path

    @property
    def name(self) -> str:
        return self.image.stem


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem))


def _image_files(img_dir: Path) -> list[Path]:
    return [p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]


def list_split(part_dir: Path, split: str) -> list[Sample]:
    """Every image of `split` with its GT_<name>.mat, in natural order (IMG_2 before IMG_10).

    BenchError for a missing or empty images folder, a missing ground-truth folder, an
    image without its annotation (never silently skipped), an annotation that does not
    read as ShanghaiTech's, or an image whose header does not read: all before training.
    """
    if split not in SPLITS:
        raise BenchError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    split_dir = part_dir / f"{split}_data"
    img_dir = split_dir / "images"
    if not img_dir.is_dir():
        raise BenchError(f"{img_dir}: folder not found (expected the {split} images there)")
    images = sorted(_image_files(img_dir), key=_natural_key)
    if not images:
        raise BenchError(f"{img_dir}: no images (expected IMG_<n>.jpg files)")
    gt_dir = next((split_dir / d for d in GT_DIRS if (split_dir / d).is_dir()), None)
    if gt_dir is None:
        raise BenchError(f"{split_dir}: no ground_truth/ (or ground-truth/) folder of .mat files")
    samples = []
    for img in images:
        mat = gt_dir / f"GT_{img.stem}.mat"
        if not mat.is_file():
            raise BenchError(f"{img}: no annotation (expected {mat})")
        samples.append(Sample(img, mat))
    _check_files(tuple((s, _stamp(s.image), _stamp(s.annotation)) for s in samples))
    return samples


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@functools.cache
def _check_files(samples: tuple[tuple[Sample, tuple, tuple], ...]) -> None:
    """Read every annotation and image header once per process and file version (seconds
    for all of ShanghaiTech), so a bad file is named before any run starts."""
    for sample, _, _ in samples:
        read_points(sample.annotation)
        image_shape(sample.image)


def read_points(path: Path) -> np.ndarray:
    """Head points (x, y) of a ShanghaiTech GT_*.mat as an N x 2 float64 array."""
    try:
        mat = loadmat(path)
    except Exception as e:  # scipy raises MatReadError, ValueError, IndexError ... on junk
        detail = " ".join(str(e).split()) or type(e).__name__
        raise BenchError(f"{path}: not a readable .mat file ({detail})") from None
    expected = "expected image_info{1}.location, an N x 2 array of (x, y)"
    if "image_info" not in mat:
        raise BenchError(f"{path}: no 'image_info' variable ({expected})")
    try:
        struct = mat["image_info"][0, 0][0, 0]
        names = getattr(struct.dtype, "names", None) or ()
        loc = struct["location"] if "location" in names else struct[0]
        pts = np.asarray(loc, dtype=np.float64)
    except (IndexError, TypeError, ValueError, KeyError):
        raise BenchError(f"{path}: 'image_info' has an unexpected layout ({expected})") from None
    if pts.size == 0:
        return np.zeros((0, 2))
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise BenchError(f"{path}: image_info location has shape {pts.shape} ({expected})")
    if not np.isfinite(pts).all():
        raise BenchError(f"{path}: image_info location holds non-finite coordinates")
    return pts


def read_image(path: Path) -> np.ndarray:
    """An H x W x 3 uint8 array; grayscale (and any other mode) becomes RGB."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))  # writable: torch.from_numpy wants that
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: unreadable image ({' '.join(str(e).split())})") from None


def image_shape(path: Path) -> tuple[int, int]:
    """(H, W) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError) as e:
        raise BenchError(f"{path}: unreadable image ({' '.join(str(e).split())})") from None
    return h, w


def validation_count(n: int, fraction: float) -> int:
    """Images `carve_validation` moves from n training images to validation."""
    return min(max(1, round(fraction * n)), n - 1)


def count_images(img_dir: Path) -> int:
    """Image files in a folder, as `list_split` finds them (0 when it does not exist)."""
    return len(_image_files(img_dir)) if img_dir.is_dir() else 0


def carve_validation(
    samples: list[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(train, val): a fixed `fraction` of train, chosen by a seeded hash of the file names.

    The choice depends only on (seed, names), not on any RNG stream or the image order, so
    it is the same on every machine and version. At least one image goes to each side.
    """
    if not 0 < fraction < 1:
        raise BenchError(f"val_fraction {fraction}: expected a number in (0, 1)")
    if len(samples) < 2:
        raise BenchError(
            f"{len(samples)} training image(s): need at least 2 to carve a validation split"
        )
    n_val = validation_count(len(samples), fraction)

    def rank(s: Sample) -> bytes:
        return hashlib.sha256(f"{seed}:{s.name}".encode()).digest()

    chosen = {s.name for s in sorted(samples, key=rank)[:n_val]}
    train = [s for s in samples if s.name not in chosen]
    val = [s for s in samples if s.name in chosen]
    return train, val


def split_digest(splits: dict[str, list[Sample]]) -> str:
    """sha256 over the image names of each split: what a run directory's identity holds."""
    text = ";".join(f"{k}:{','.join(s.name for s in v)}" for k, v in sorted(splits.items()))
    return text_sha256(text, 16)
