"""HDF5 cache of density maps: one file per image, with its kernel parameters as attributes.

A cache file is reused only when its attributes match what is asked for now: the density
settings (kernel, sigma, beta, neighbours, border, outside policy, truncate), the format
version, the image size and the sha256 of the annotation file. Anything else (other
parameters, an edited .mat, a half-finished older format) is rebuilt, never reused.
Files are written to a temporary name, fsynced and renamed (bench.util.io.atomic_path), so a
reader never sees half a file, concurrent builders cannot corrupt one, and a failed write
(a full disk) leaves the previous file; what a killed builder left is removed the next
time that map is built.

Location: beside the annotations (ground_truth/GT_IMG_n.density.h5) when that folder is
writable, else under the cache folder ($TICKETBENCH_CACHE or ~/.cache/ticketbench, the
suite's convention) in crowd_counting/<part>-<split>-<hash of the folder>/; an explicit
`cache_dir` replaces the cache folder and is always used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from bench.util.errors import BenchError
from bench.util.faults import kill_point
from bench.util.fingerprint import file_sha256, text_sha256
from bench.util.io import atomic_path, remove_stale_temps
from bench.util.paths import default_cache_dir
from tasks.crowd_counting.data import Sample, image_shape, read_points
from tasks.crowd_counting.density import DensitySpec, density_map

FORMAT_VERSION = 1
DATASET = "density"


def cache_path(sample: Sample, cache_dir: Path | None = None) -> Path:
    """Where the density map of `sample` is cached (see the module docstring)."""
    gt_dir = sample.annotation.parent
    name = f"{sample.annotation.stem}.density.h5"
    if cache_dir is None and os.access(gt_dir, os.W_OK):
        return gt_dir / name
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    split_dir = gt_dir.parent  # <part>/<split>_data
    digest = text_sha256(str(gt_dir.resolve()), 12)
    sub = f"{split_dir.parent.name}-{split_dir.name}-{digest}"
    return base / "crowd_counting" / sub / name


@dataclass(frozen=True)
class CacheEntry:
    """A cached map and the point bookkeeping of its annotation."""

    path: Path
    shape: tuple[int, int]
    annotated: int  # points in the annotation: the ground-truth count
    outside: int  # of those, points outside the image
    placed: int  # heads put into the map
    mass: float  # the map's sum
    built: bool  # built now (False: an existing file was reused)


def _wanted_attrs(spec: DensitySpec, shape: tuple[int, int], source_sha: str) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        **{f"density_{k}": v for k, v in spec.as_dict().items()},
        "image_shape": list(shape),
        "source_sha256": source_sha,
    }


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray | list | tuple):
        return list(np.asarray(a).tolist()) == list(np.asarray(b).tolist())
    if isinstance(a, bytes):
        a = a.decode()
    return a == b


def _read_entry(path: Path, wanted: dict) -> CacheEntry | None:
    """The entry if `path` holds a complete map with exactly the wanted attributes."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if DATASET not in f:
                return None
            shape = tuple(f[DATASET].shape)
    except (OSError, ValueError):
        return None  # unreadable or foreign: rebuild
    for k, v in wanted.items():
        if k not in attrs or not _same(attrs[k], v):
            return None
    if shape != tuple(wanted["image_shape"]):
        return None
    return CacheEntry(
        path,
        (int(shape[0]), int(shape[1])),
        int(attrs["annotated"]),
        int(attrs["outside"]),
        int(attrs["placed"]),
        float(attrs["mass"]),
        built=False,
    )


def _write(path: Path, density: np.ndarray, attrs: dict) -> None:
    remove_stale_temps(path.parent, path.name)  # a killed builder's leftovers
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(
            DATASET,
            data=density.astype(np.float32),
            chunks=True,
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        for k, v in attrs.items():
            f.attrs[k] = v


def cached_density(sample: Sample, spec: DensitySpec, cache_dir: Path | None = None) -> CacheEntry:
    """Reuse the cached map of `sample` if it was made with `spec`, else (re)build it."""
    path = cache_path(sample, cache_dir)
    shape = image_shape(sample.image)
    wanted = _wanted_attrs(spec, shape, file_sha256(sample.annotation))
    entry = _read_entry(path, wanted)
    if entry is not None:
        return entry
    dm = density_map(read_points(sample.annotation), shape, spec)
    kill_point("density.map")
    attrs = {
        **wanted,
        "annotated": dm.annotated,
        "outside": dm.outside,
        "placed": dm.placed,
        "mass": float(dm.density.sum()),
        "source": str(sample.annotation),
    }
    try:
        _write(path, dm.density, attrs)
    except OSError as e:
        raise BenchError(f"{path}: cannot write the density cache ({e.strerror or e})") from None
    return CacheEntry(path, shape, dm.annotated, dm.outside, dm.placed, attrs["mass"], True)


def read_density(path: Path, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The cached map (float32), or only rows y0:y1, columns x0:x1 of it."""
    with h5py.File(path, "r") as f:
        ds = f[DATASET]
        if window is None:
            return ds[...]
        y0, y1, x0, x1 = window
        return ds[y0:y1, x0:x1]
