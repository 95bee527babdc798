"""(e) Density maps vs CSRNet's published algorithm, per part, at equal output, and how
their time grows with the number of heads.

Reference: make_dataset.ipynb of leeyeehoo/CSRNet-pytorch, the repo's one transcription of
it (tests/test_csrnet_oracle.py): Part A one float32 gaussian_filter(mode="constant") of
the whole image per head (geometry-adaptive sigma); Part B one gaussian_filter(15) of the
point map. Ours: density_map(border="csrnet"), the same maps (max |difference| / max is
recorded at the smallest count, where CSRNet's whole algorithm runs once untimed). One
768 x 1024 image of clustered heads per count. CSRNet's Part A costs one full-image filter
per head (seconds to minutes per image), so it is timed on a fixed random sample of SAMPLE
heads (the notebook's per-head loop body on them; its point map and KD-tree left out,
which favours CSRNet) and scaled by heads / SAMPLE.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import scipy.ndimage
import scipy.spatial

from benchmarks.harness import Metric, Session, Target
from tasks.crowd_counting.density import DensitySpec, density_map

ROOT = Path(__file__).resolve().parents[1]
# image (H, W), head counts, CSRNet Part A heads timed
SIZES = {
    "default": ((768, 1024), (100, 500, 2000, 5000), 20),
    "quick": ((192, 256), (20, 100), 10),
}
SPECS = {
    "A": DensitySpec(kernel="adaptive", border="csrnet", outside="drop"),
    "B": DensitySpec(kernel="fixed", sigma=15.0, border="csrnet", outside="drop"),
}


def oracle() -> ModuleType:
    """tests/test_csrnet_oracle.py: the transcription of CSRNet's notebook."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("test_csrnet_oracle")


def crowd_points(n: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """n heads (x, y): denser towards the top (farther from the camera), in a few groups."""
    rng = np.random.default_rng(seed)
    h, w = shape
    centres = np.stack([rng.uniform(0, w, 8), rng.beta(2, 4, 8) * h], axis=1)
    pick = rng.integers(0, len(centres), n)
    spread = 20 + 80 * centres[pick, 1:2] / h  # nearer groups spread wider
    pts = centres[pick] + rng.normal(0, 1, (n, 2)) * spread
    return np.clip(pts, [0, 0], [w - 1e-3, h - 1e-3])


def sampled_part_a(ora: ModuleType, pts: np.ndarray, shape: tuple[int, int], sample: int) -> Any:
    """The notebook's Part A loop body on `sample` of the heads (fixed random choice)."""
    gt = ora.notebook_point_map(pts, shape)
    xy = np.array(list(zip(np.nonzero(gt)[1], np.nonzero(gt)[0])))
    distances, _ = scipy.spatial.KDTree(xy.copy(), leafsize=2048).query(xy, k=4)
    pick = np.random.default_rng(0).choice(len(xy), size=min(sample, len(xy)), replace=False)

    def loop() -> np.ndarray:
        density = np.zeros(gt.shape, dtype=np.float32)
        for i in pick:
            pt2d = np.zeros(gt.shape, dtype=np.float32)
            pt2d[xy[i][1], xy[i][0]] = 1.0
            sigma = (distances[i][1] + distances[i][2] + distances[i][3]) * 0.1
            density += scipy.ndimage.gaussian_filter(pt2d, sigma, mode="constant")
        return density

    return loop, len(xy) / len(pick)


def compare_part(s: Session, ora: ModuleType, part: str, n: int) -> Any:
    shape, heads, sample = s.pick(SIZES)
    pts, spec = crowd_points(n, shape), SPECS[part]
    full = ora.oracle_part_a if part == "A" else ora.oracle_part_b
    info: dict[str, Any] = {"heads": n, "image": list(shape)}
    if n == heads[0]:  # equal output, checked once against the whole algorithm
        want, ours = full(pts, shape), density_map(pts, shape, spec).density
        info["max_abs_diff_rel"] = float(np.abs(ours - want).max() / want.max())
    ref, scale = (lambda: full(pts, shape)), 1.0
    if part == "A":
        ref, scale = sampled_part_a(ora, pts, shape, sample)
        info.update(csrnet_timed_on=min(sample, n), csrnet_scale=scale)
    sides = {"csrnet": ref, "ours": lambda: density_map(pts, shape, spec)}
    fig = Metric("ours / CSRNet", lambda t: scale * t["csrnet"] / t["ours"], Target(lo=100))
    return s.compare(f"Part {part}, {n} heads", sides, [fig], info=info)


def run(s: Session) -> None:
    from bench.report.plots import save_figure

    ora = oracle()
    (h, w), heads, _ = s.pick(SIZES)
    rows, times = [], {}
    for part in ("A", "B"):
        for n in heads:
            c = compare_part(s, ora, part, n)
            times[part, n] = c.sides["ours"].median
            csrnet = c.sides["csrnet"].median * c.info.get("csrnet_scale", 1.0)
            rows.append([part, n, c.sides["ours"].median * 1e3, csrnet,
                         c.info.get("max_abs_diff_rel", "")])  # fmt: skip
    s.table(f"Density-map time vs heads ({h} x {w}; CSRNet Part A: sampled, scaled)",
            ["part", "heads", "ours ms", "CSRNet s", "max |d| / max"], rows)  # fmt: skip
    s.files += [str(p) for p in save_figure(_figure(times), s.out / "density_growth")]


def _figure(times: dict[tuple[str, int], float]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.add_subplot()
    for part in ("A", "B"):
        pts = sorted((n, t) for (p, n), t in times.items() if p == part)
        ax.loglog([n for n, _ in pts], [t * 1e3 for _, t in pts], "o-", label=f"Part {part}")
    ax.set(xlabel="heads", ylabel="ms per map (ours)", title="Density-map time vs heads")
    ax.legend()
    return fig
