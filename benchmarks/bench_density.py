"""Density-map generation benchmark (not a test): ours vs CSRNet's naive algorithm.

The naive reference (tasks.crowd_counting.density.reference_density) does what CSRNet's
preprocessing does: one full-image scipy gaussian_filter(mode="constant") per head, summed.
Ours adds each head's kernel only on its footprint. Both compute the same map when border
renormalization is off (border="cut"), and both include the KD-tree sigma computation.
One 768 x 1024 image with 500 heads (clustered like a crowd), side by side in one process;
then the Part A-sized workload (300 images of about 500 heads) extrapolated for both.
Targets: ours >= 50x faster, max |difference| < 1e-6 of the map's maximum.

Run: .venv/bin/python benchmarks/bench_density.py [--heads 500] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tasks.crowd_counting.density import DensitySpec, density_map, reference_density

SHAPE = (768, 1024)
PART_A_IMAGES = 300


def crowd_points(n: int, seed: int = 0) -> np.ndarray:
    """n heads (x, y): denser towards the top (farther from the camera), in a few groups."""
    rng = np.random.default_rng(seed)
    h, w = SHAPE
    centres = np.stack([rng.uniform(0, w, 8), rng.beta(2, 4, 8) * h], axis=1)
    pick = rng.integers(0, len(centres), n)
    spread = 20 + 80 * centres[pick, 1:2] / h  # nearer groups spread wider
    pts = centres[pick] + rng.normal(0, 1, (n, 2)) * spread
    return np.clip(pts, [0, 0], [w - 1e-3, h - 1e-3])


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heads", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=20, help="timed runs of ours (median)")
    args = ap.parse_args()
    pts = crowd_points(args.heads)
    print(f"image {SHAPE[0]}x{SHAPE[1]}, {args.heads} heads, numpy {np.__version__}")
    print(
        f"{'kernel':<9} {'ours ms':>9} {'naive s':>9} {'speed-up':>9} {'max|d|/max':>11} "
        f"{'Part A ours':>12} {'Part A naive':>13}"
    )
    for kernel in ("adaptive", "fixed"):
        spec = DensitySpec(kernel=kernel, sigma=15.0, border="cut")
        ours_s, ours = timed(lambda s=spec: density_map(pts, SHAPE, s).density, args.repeats)
        naive_s, naive = timed(lambda s=spec: reference_density(pts, SHAPE, s), 1)
        rel = float(np.abs(ours - naive).max() / naive.max())
        print(
            f"{kernel:<9} {ours_s * 1e3:>9.1f} {naive_s:>9.2f} {naive_s / ours_s:>8.0f}x "
            f"{rel:>11.1e} {ours_s * PART_A_IMAGES:>10.1f} s "
            f"{naive_s * PART_A_IMAGES / 3600:>11.2f} h"
        )
    renorm = DensitySpec(kernel="adaptive")
    r_s, r_map = timed(lambda: density_map(pts, SHAPE, renorm).density, args.repeats)
    cut = density_map(pts, SHAPE, DensitySpec(kernel="adaptive", border="cut")).density
    print(
        f"adaptive with border renormalization (the default): {r_s * 1e3:.1f} ms; map sum "
        f"{r_map.sum():.6f} for {args.heads} heads (cut: {cut.sum():.3f})"
    )
    print("targets: speed-up >= 50x, max|d|/max < 1e-6; Part A = 300 images, extrapolated")


if __name__ == "__main__":
    main()
