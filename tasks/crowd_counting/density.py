"""Density maps from head points: Gaussian kernels that integrate to the head count.

Conventions (after CSRNet's `make_dataset` preprocessing, Li et al. 2018; its exact
algorithm is `border="csrnet"`, below):
  * a head at (x, y) is placed at pixel (floor(y), floor(x)); kernel sizes are those of
    `scipy.ndimage.gaussian_filter` (truncate 4: radius int(4 * sigma + 0.5)), so a map
    computed here equals the sum of one full-image `gaussian_filter(mode="constant")` per
    head, only computed on each kernel's footprint;
  * Part A, geometry-adaptive: sigma = beta * mean distance to the k nearest other heads
    (beta 0.3, k 3; KD-tree over the head pixels); Part B: a fixed sigma of 15;
  * a lone head (no neighbour) gets sigma = mean(height, width) / 4, CSRNet's fallback;
    with fewer than k other heads the mean runs over those there are (CSRNet would take
    infinite distances there); stacked heads at distance 0 get a one-pixel kernel, as
    gaussian_filter does for sigma 0.

Border: gaussian_filter with mode "constant" drops the part of a kernel that falls
outside the image, so CSRNet's Part A maps sum to less than the head count.
`border="renormalize"` (default) rescales each cut kernel so that every head adds exactly
1; `border="cut"` keeps the mass loss (each annotated head its own constant-mode kernel,
float64) but is not CSRNet's algorithm as a whole; `border="csrnet"` is
(`csrnet_density`, tests/test_csrnet_oracle.py):

  * CSRNet-pytorch make_dataset.ipynb: heads are written as 1s into a map of zeros
    (`k[int(y), int(x)] = 1`: heads on one pixel merge into one), then
  * Part A (kernel "adaptive", `gaussian_filter_density`): KD-tree (leafsize 2048) over the
    non-zero pixels, sigma = (d1 + d2 + d3) x 0.1 (= beta x mean of the k nearest), a lone
    pixel sigma = mean(H, W) / 4; one gaussian_filter(mode="constant") per pixel, in
    float32, summed into a float32 map in row-major pixel order. The notebook crashes
    (infinite sigma) with 2 or 3 pixels; here the mean runs over the neighbours there are.
  * Part B (kernel "fixed"): one gaussian_filter(sigma) of the whole point map in its
    default mode "reflect" (the mass that leaves the image is reflected back: the map sums
    to the number of distinct head pixels), float64 as the notebook's `np.zeros` map;
    with few heads computed on each head's footprint (`csrnet_fixed`).
  * Points: the notebook truncates with int() (the same pixel as floor inside the image)
    and skips points past the bottom/right border (our `outside="drop"`); a point in
    (-1, 0) lands on pixel 0 (our "clip" does that, "drop" leaves it out), and points at
    -1 or less wrap to the opposite border by numpy's negative indexing (a bug, not
    reproduced: they follow `outside`).

Heads outside the image are counted (`outside`) and, by default, moved to the nearest
border pixel (`outside_policy="clip"`) so the map still sums to the annotated count;
"drop" leaves them out of the map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.spatial import KDTree

from bench.util.errors import BenchError

Border = Literal["renormalize", "cut", "csrnet"]
Outside = Literal["clip", "drop"]
Kernel = Literal["adaptive", "fixed"]

TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, which CSRNet's preprocessing used
_TINY_SIGMA = 1e-15  # below this gaussian_filter leaves the input as it is


@dataclass(frozen=True)
class DensitySpec:
    """Everything that fixes a density map besides its points and image size."""

    kernel: Kernel = "adaptive"
    sigma: float = 15.0  # fixed kernel (Part B)
    beta: float = 0.3  # adaptive: sigma = beta * mean distance to the k nearest heads
    neighbours: int = 3
    border: Border = "renormalize"
    outside: Outside = "clip"
    truncate: float = TRUNCATE

    def __post_init__(self) -> None:
        checks = (
            (self.kernel in ("adaptive", "fixed"), "kernel must be adaptive or fixed"),
            (
                self.border in ("renormalize", "cut", "csrnet"),
                "border must be renormalize, cut or csrnet",
            ),
            (self.outside in ("clip", "drop"), "outside must be clip or drop"),
            (self.sigma > 0, "sigma must be > 0"),
            (self.beta > 0, "beta must be > 0"),
            (self.neighbours >= 1, "neighbours must be >= 1"),
            (self.truncate > 0, "truncate must be > 0"),
        )
        for ok, msg in checks:
            if not ok:
                raise BenchError(f"density map settings: {msg}")

    def as_dict(self) -> dict[str, str | float | int]:
        return asdict(self)


@dataclass(frozen=True)
class HeadPixels:
    """Heads as pixel indices inside the image, plus how many lay outside it."""

    rows: np.ndarray  # int64
    cols: np.ndarray  # int64
    annotated: int  # every point of the annotation
    outside: int  # points whose pixel is not in the image


def head_pixels(points: np.ndarray, shape: tuple[int, int], outside: Outside) -> HeadPixels:
    """Pixels of (x, y) `points` in an image of `shape` (H, W), with the outside policy."""
    h, w = shape
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise BenchError("head points: expected finite (x, y) coordinates")
    cols = np.floor(pts[:, 0]).astype(np.int64)
    rows = np.floor(pts[:, 1]).astype(np.int64)
    out = (rows < 0) | (rows >= h) | (cols < 0) | (cols >= w)
    if outside == "clip":
        rows, cols = np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)
    else:
        rows, cols = rows[~out], cols[~out]
    return HeadPixels(rows, cols, len(pts), int(out.sum()))


def head_sigmas(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], spec: DensitySpec
) -> np.ndarray:
    """One sigma per head: fixed, or geometry-adaptive from a KD-tree (module docstring)."""
    n = len(rows)
    if spec.kernel == "fixed":
        return np.full(n, float(spec.sigma))
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.array([(shape[0] + shape[1]) / 2.0 / 4.0])
    k = min(spec.neighbours, n - 1)
    xy = np.stack([cols, rows], axis=1).astype(np.float64)
    dist, _ = KDTree(xy).query(xy, k=k + 1)  # the nearest is the head itself
    return spec.beta * dist[:, 1:].mean(axis=1)


def gaussian_kernel1d(sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """The normalized 1-d kernel `gaussian_filter` uses (radius int(truncate*sigma + 0.5))."""
    if sigma <= _TINY_SIGMA:
        return np.ones(1)
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 / (sigma * sigma) * x**2)  # scipy's _gaussian_kernel1d, to the bit
    return k / k.sum()


def _splat(dst: np.ndarray, row: int, col: int, sigma: float, spec: DensitySpec) -> None:
    k = gaussian_kernel1d(sigma, spec.truncate)
    r = len(k) // 2
    h, w = dst.shape
    y0, y1 = max(row - r, 0), min(row + r + 1, h)
    x0, x1 = max(col - r, 0), min(col + r + 1, w)
    ky = k[y0 - row + r : y1 - row + r]
    kx = k[x0 - col + r : x1 - col + r]
    patch = np.outer(ky, kx)
    if spec.border == "renormalize" and (len(ky) < len(k) or len(kx) < len(k)):
        # Separable kernel: the kept mass is the product of the kept 1-d masses.
        patch /= ky.sum() * kx.sum()
    dst[y0:y1, x0:x1] += patch


@dataclass(frozen=True)
class DensityMap:
    """A density map and the bookkeeping of the points it came from."""

    density: np.ndarray  # float64 (H, W) (holding float32 values for border="csrnet", Part A)
    annotated: int
    outside: int
    placed: int  # heads in the map (annotated, minus outside ones under "drop"; "csrnet":
    # the distinct head pixels)


def density_map(points: np.ndarray, shape: tuple[int, int], spec: DensitySpec) -> DensityMap:
    """The density map of (x, y) `points` on an image of `shape` (H, W)."""
    heads = head_pixels(points, shape, spec.outside)
    if spec.border == "csrnet":
        density, placed = csrnet_density(heads.rows, heads.cols, shape, spec)
        return DensityMap(density, heads.annotated, heads.outside, placed)
    sigmas = head_sigmas(heads.rows, heads.cols, shape, spec)
    dst = np.zeros(shape, dtype=np.float64)
    for row, col, sigma in zip(heads.rows.tolist(), heads.cols.tolist(), sigmas.tolist()):
        _splat(dst, row, col, sigma, spec)
    return DensityMap(dst, heads.annotated, heads.outside, len(heads.rows))


def csrnet_density(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], spec: DensitySpec
) -> tuple[np.ndarray, int]:
    """CSRNet's make_dataset.ipynb on head pixels (module docstring): (map, pixels in it).

    Part A is computed on each kernel's footprint: the float32 values equal those of one
    full-image float32 gaussian_filter(mode="constant") per pixel (scipy filters axis 0,
    rounds to float32, then axis 1), accumulated in the same order.
    """
    ys, xs = distinct_pixels(rows, cols, shape)
    if spec.kernel == "fixed":
        return csrnet_fixed(ys, xs, shape, spec), len(ys)
    n = len(ys)
    dst = np.zeros(shape, dtype=np.float32)
    if n == 0:
        return dst.astype(np.float64), 0
    if n == 1:
        sigmas = np.array([np.average(np.array(shape)) / 2.0 / 2.0])
    else:
        k = min(spec.neighbours, n - 1)
        xy = np.stack([xs, ys], axis=1)
        dist, _ = KDTree(xy, leafsize=2048).query(xy, k=k + 1)
        sigmas = dist[:, 1:].sum(axis=1) * (spec.beta / k)
    h, w = shape
    for row, col, sigma in zip(ys.tolist(), xs.tolist(), sigmas.tolist()):
        kern = gaussian_kernel1d(sigma, spec.truncate)
        r = len(kern) // 2
        y0, y1 = max(row - r, 0), min(row + r + 1, h)
        x0, x1 = max(col - r, 0), min(col + r + 1, w)
        ky = kern[y0 - row + r : y1 - row + r].astype(np.float32).astype(np.float64)
        kx = kern[x0 - col + r : x1 - col + r]
        dst[y0:y1, x0:x1] += np.outer(ky, kx).astype(np.float32)
    return dst.astype(np.float64), n


def distinct_pixels(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of the notebook's 0/1 point map, in np.nonzero's row-major order, without
    the map: heads on one pixel count once (scanning the map took 3 ms at 768 x 1024)."""
    flat = np.unique(np.asarray(rows, dtype=np.int64) * shape[1] + cols)
    return flat // shape[1], flat % shape[1]


def reflected_kernel(center: int, size: int, kernel: np.ndarray) -> tuple[int, np.ndarray]:
    """gaussian_filter1d's mode="reflect" response to a unit impulse at `center` on a line
    of `size` pixels: (first pixel, values). Taps past an end fold back (d c b a | a b c d),
    repeatedly when the kernel is longer than the line."""
    r = len(kernel) // 2
    if r <= center < size - r:
        return center - r, kernel  # nothing to fold
    idx = np.mod(np.arange(center - r, center + r + 1), 2 * size)
    idx = np.where(idx >= size, 2 * size - 1 - idx, idx)
    lo = int(idx.min())
    out = np.zeros(int(idx.max()) - lo + 1)
    np.add.at(out, idx - lo, kernel)
    return lo, out


def csrnet_fixed(
    ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], spec: DensitySpec
) -> np.ndarray:
    """CSRNet's Part B map, `gaussian_filter(gt, sigma)` (mode "reflect", float64), of the
    0/1 map `gt` of the distinct head pixels (ys, xs). With few heads each head's reflected
    kernel is added on its footprint instead (the same values up to float64 rounding):
    n x (2r+1)^2 additions instead of the filter's 2 x H x W x (2r+1) multiply-adds, chosen
    while under a third of them (numpy adds patches at about a third of the filter's rate:
    at 768 x 1024, sigma 15, 2,000 heads took 27 ms on footprints, the filter 64 ms).
    Heads whose kernel folds at no border share one precomputed patch."""
    h, w = shape
    kernel = gaussian_kernel1d(spec.sigma, spec.truncate)
    if 3 * len(ys) * len(kernel) > 2 * h * w:
        gt = np.zeros(shape)
        gt[ys, xs] = 1.0
        return gaussian_filter(gt, spec.sigma, truncate=spec.truncate)
    rows = {y: reflected_kernel(y, h, kernel) for y in set(ys.tolist())}
    cols = {x: reflected_kernel(x, w, kernel) for x in set(xs.tolist())}
    interior = np.outer(kernel, kernel)
    dst = np.zeros((h, w))
    for y, x in zip(ys.tolist(), xs.tolist()):
        (y0, ky), (x0, kx) = rows[y], cols[x]
        patch = interior if ky is kernel and kx is kernel else np.outer(ky, kx)
        dst[y0 : y0 + len(ky), x0 : x0 + len(kx)] += patch
    return dst


def sum_pool(density: np.ndarray | torch.Tensor, factor: int) -> np.ndarray | torch.Tensor:
    """Sum over factor x factor cells (zero-padding bottom/right to a multiple of factor).

    The total is preserved exactly (up to float rounding), unlike resizing; the output has
    ceil(H / factor) x ceil(W / factor) cells, the size of a stride-`factor` network's
    output. Works on numpy arrays and on tensors, over the last two dimensions.
    """
    if factor < 1:
        raise ValueError("factor must be >= 1")
    if factor == 1:
        return density
    h, w = density.shape[-2:]
    ph, pw = -h % factor, -w % factor
    if isinstance(density, torch.Tensor):
        x = torch.nn.functional.pad(density, (0, pw, 0, ph))
        lead = x.shape[:-2]
        x = x.reshape(*lead, (h + ph) // factor, factor, (w + pw) // factor, factor)
        return x.sum(dim=(-3, -1))
    pad = [(0, 0)] * (density.ndim - 2) + [(0, ph), (0, pw)]
    x = np.pad(density, pad)
    lead = x.shape[:-2]
    x = x.reshape(*lead, (h + ph) // factor, factor, (w + pw) // factor, factor)
    return x.sum(axis=(-3, -1))
