"""CSRNet's published density maps, transcribed independently, against border="csrnet".

The oracle below is leeyeehoo/CSRNet-pytorch make_dataset.ipynb (commit 49bda70), written
out with numpy + scipy only; nothing from tasks.crowd_counting.density is used but the
functions under test (density_map, DensitySpec). Python 2 -> 3: `zip` becomes `list(zip)`,
`scipy.ndimage.filters` is `scipy.ndimage`.

Real point sets: the stardist wheel's 125 nuclei centroids, tiled as
tasks/crowd_counting/sample.py does (512 x 512 image -> 4 x 4 tiles of 128 x 128).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import scipy.spatial
from scipy.ndimage import gaussian_filter

from tasks.crowd_counting.density import DensitySpec, density_map


# ---- the oracle: make_dataset.ipynb ---------------------------------------------------------
def notebook_point_map(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The Part A / Part B loop cells of make_dataset.ipynb:

    k = np.zeros((img.shape[0],img.shape[1]))
    for i in range(0,len(gt)):
        if int(gt[i][1])<img.shape[0] and int(gt[i][0])<img.shape[1]:
            k[int(gt[i][1]),int(gt[i][0])]=1
    """
    k = np.zeros((shape[0], shape[1]))  # float64: np.zeros's default
    gt = points
    for i in range(0, len(gt)):
        if int(gt[i][1]) < shape[0] and int(gt[i][0]) < shape[1]:
            k[int(gt[i][1]), int(gt[i][0])] = 1
    return k


def gaussian_filter_density(gt: np.ndarray) -> np.ndarray:
    """Cell 2 of make_dataset.ipynb ("borrowed from davideverona/deep-crowd-counting_crowdnet"):

    density = np.zeros(gt.shape, dtype=np.float32)
    gt_count = np.count_nonzero(gt)
    if gt_count == 0: return density
    pts = np.array(zip(np.nonzero(gt)[1], np.nonzero(gt)[0]))
    leafsize = 2048
    tree = scipy.spatial.KDTree(pts.copy(), leafsize=leafsize)
    distances, locations = tree.query(pts, k=4)
    for i, pt in enumerate(pts):
        pt2d = np.zeros(gt.shape, dtype=np.float32)
        pt2d[pt[1],pt[0]] = 1.
        if gt_count > 1:
            sigma = (distances[i][1]+distances[i][2]+distances[i][3])*0.1
        else:
            sigma = np.average(np.array(gt.shape))/2./2. #case: 1 point
        density += scipy.ndimage.filters.gaussian_filter(pt2d, sigma, mode='constant')
    return density
    """
    density = np.zeros(gt.shape, dtype=np.float32)
    gt_count = np.count_nonzero(gt)
    if gt_count == 0:
        return density
    pts = np.array(list(zip(np.nonzero(gt)[1], np.nonzero(gt)[0])))
    leafsize = 2048
    tree = scipy.spatial.KDTree(pts.copy(), leafsize=leafsize)
    distances, locations = tree.query(pts, k=4)
    for i, pt in enumerate(pts):
        pt2d = np.zeros(gt.shape, dtype=np.float32)
        pt2d[pt[1], pt[0]] = 1.0
        if gt_count > 1:
            sigma = (distances[i][1] + distances[i][2] + distances[i][3]) * 0.1
        else:
            sigma = np.average(np.array(gt.shape)) / 2.0 / 2.0  # case: 1 point
        density += scipy.ndimage.gaussian_filter(pt2d, sigma, mode="constant")
    return density


def oracle_part_a(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Part A loop cell: `k = gaussian_filter_density(k)`."""
    return gaussian_filter_density(notebook_point_map(points, shape))


def oracle_part_b(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Part B loop cell: `k = gaussian_filter(k,15)` (mode "reflect", float64 in and out)."""
    return gaussian_filter(notebook_point_map(points, shape), 15)


CSRNET_A = DensitySpec(kernel="adaptive", border="csrnet", outside="drop")
CSRNET_B = DensitySpec(kernel="fixed", sigma=15.0, border="csrnet", outside="drop")


# ---- point sets -----------------------------------------------------------------------------
def nuclei_points() -> np.ndarray:
    """The 125 nuclei centroids (x, y) of stardist's mask2d.tif, as sample.nuclei computes
    them (labels -> scipy center_of_mass -> (row, col) -> (x, y)), re-derived here."""
    from tasks.crowd_counting.sample import stardist_images_dir

    pytest.importorskip("PIL")
    from PIL import Image

    try:
        d = stardist_images_dir()
    except Exception as e:  # noqa: BLE001 - the wheel is optional
        pytest.skip(f"stardist sample images unavailable: {e}")
    with Image.open(d / "mask2d.tif") as im:
        labels = np.asarray(im).astype(np.int64)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    rc = np.asarray(scipy.ndimage.center_of_mass(labels > 0, labels, ids), dtype=np.float64)
    return rc[:, ::-1].copy()


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    pts = nuclei_points()
    assert pts.shape == (125, 2)
    return pts


def tile_cases(points: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """The 16 tiles of sample.tiles (128 x 128; every second Part A tile 125 rows), points
    in tile coordinates, plus the whole 512 x 512 image."""
    out = [(points, (512, 512))]
    for i in range(16):
        r, c = divmod(i, 4)
        h = 125 if i % 2 else 128
        x, y = points[:, 0] - c * 128, points[:, 1] - r * 128
        keep = (x >= 0) & (x < 128) & (y >= 0) & (y < h)
        out.append((np.stack([x[keep], y[keep]], axis=1), (h, 128)))
    return out


# Two heads on one pixel, heads on every border and in every corner, fractional positions,
# points past the bottom/right (the notebook skips them; outside="drop").
HANDCRAFTED = np.array(
    [
        [10.2, 10.7],
        [10.9, 10.1],  # same pixel as the one above: merged
        [0.0, 0.0],
        [56.99, 0.5],
        [0.3, 39.99],
        [56.5, 39.2],
        [28.0, 0.0],
        [0.0, 20.5],
        [30.3, 21.8],
        [33.0, 24.0],
        [45.5, 12.25],
        [57.0, 10.0],  # x == W: past the right border
        [20.0, 40.5],  # y == H: past the bottom
    ]
)
HAND_SHAPE = (40, 57)


def assert_reproduces(ours: np.ndarray, oracle: np.ndarray) -> float:
    assert ours.shape == oracle.shape
    diff = float(np.abs(ours.astype(np.float64) - oracle.astype(np.float64)).max())
    assert diff <= 1e-6 * float(oracle.max())
    assert float(ours.sum()) == pytest.approx(float(oracle.sum(dtype=np.float64)), abs=1e-4)
    return diff


# ---- the oracle itself ----------------------------------------------------------------------
def test_oracle_behaves_as_the_notebook() -> None:
    k = notebook_point_map(HANDCRAFTED, HAND_SHAPE)
    assert k.dtype == np.float64 and k.sum() == 10  # 13 points, 1 merge, 2 skipped
    a = oracle_part_a(HANDCRAFTED, HAND_SHAPE)
    assert a.dtype == np.float32 and a.sum() < 10 - 1  # constant mode: border mass lost
    b = oracle_part_b(HANDCRAFTED, HAND_SHAPE)
    assert b.dtype == np.float64 and b.sum() == pytest.approx(10, abs=1e-9)  # reflect
    lone = oracle_part_a(np.array([[3.0, 4.0]]), (60, 100))
    # Lone head: sigma = mean(60, 100) / 4 = 20; the same as a float32 gaussian_filter.
    delta = np.zeros((60, 100), dtype=np.float32)
    delta[4, 3] = 1
    np.testing.assert_array_equal(lone, gaussian_filter(delta, 20.0, mode="constant"))


# ---- border="csrnet" reproduces it ----------------------------------------------------------
def test_part_a_reproduces_csrnet_on_real_points(nuclei: np.ndarray) -> None:
    for pts, shape in tile_cases(nuclei):
        if len({(int(x), int(y)) for x, y in pts}) in (2, 3):
            continue  # the notebook's k=4 query gives infinite sigmas: it crashes there
        assert_reproduces(density_map(pts, shape, CSRNET_A).density, oracle_part_a(pts, shape))


def test_part_b_reproduces_csrnet_on_real_points(nuclei: np.ndarray) -> None:
    for pts, shape in tile_cases(nuclei):
        dm = density_map(pts, shape, CSRNET_B)
        assert_reproduces(dm.density, oracle_part_b(pts, shape))
        assert dm.density.sum() == pytest.approx(dm.placed, abs=1e-6)  # reflect keeps mass


@pytest.mark.parametrize("kernel", ["adaptive", "fixed"])
def test_handcrafted_merges_lone_heads_and_borders(kernel: str) -> None:
    spec, oracle = (CSRNET_A, oracle_part_a) if kernel == "adaptive" else (CSRNET_B, oracle_part_b)
    dm = density_map(HANDCRAFTED, HAND_SHAPE, spec)
    assert (dm.annotated, dm.outside, dm.placed) == (13, 2, 10)
    assert_reproduces(dm.density, oracle(HANDCRAFTED, HAND_SHAPE))
    # A lone head, and two heads on one pixel (one pixel: also the lone-head sigma).
    for pts in ([[0.5, 39.5]], [[12.1, 7.9], [12.8, 7.2]], []):
        pts = np.array(pts, dtype=np.float64).reshape(-1, 2)
        assert_reproduces(density_map(pts, HAND_SHAPE, spec).density, oracle(pts, HAND_SHAPE))


# ---- the default (renormalized) maps differ only near the border ---------------------------
def footprint_mask(pixels: np.ndarray, sigmas: np.ndarray, shape: tuple[int, int]) -> tuple:
    """(union of the footprints of the heads whose kernel the border cuts, how many)."""
    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    cut = 0
    for (row, col), sigma in zip(pixels.tolist(), sigmas.tolist()):
        r = int(4.0 * sigma + 0.5)  # gaussian_filter's radius (truncate 4)
        if row - r < 0 or col - r < 0 or row + r >= h or col + r >= w:
            cut += 1
            mask[max(row - r, 0) : row + r + 1, max(col - r, 0) : col + r + 1] = True
    return mask, cut


def notebook_sigmas(pixels: np.ndarray) -> np.ndarray:
    xy = pixels[:, ::-1]
    d, _ = scipy.spatial.KDTree(xy, leafsize=2048).query(xy, k=4)
    return (d[:, 1] + d[:, 2] + d[:, 3]) * 0.1


@pytest.mark.parametrize("kernel", ["adaptive", "fixed"])
def test_renormalized_maps_differ_from_csrnet_only_near_the_border(
    nuclei: np.ndarray, kernel: str
) -> None:
    shape = (512, 512)
    pixels = np.unique(np.floor(nuclei[:, ::-1]).astype(np.int64), axis=0)
    assert len(pixels) == len(nuclei)  # no two nuclei on one pixel: no merging here
    if kernel == "adaptive":
        sigmas, oracle = notebook_sigmas(pixels), oracle_part_a(nuclei, shape)
    else:
        sigmas, oracle = np.full(len(pixels), 15.0), oracle_part_b(nuclei, shape)
    ours = density_map(nuclei, shape, DensitySpec(kernel=kernel, sigma=15.0)).density
    mask, cut = footprint_mask(pixels, sigmas, shape)
    assert 0 < cut < len(pixels) and 0.05 < mask.mean() < 0.95  # both regions exist
    far = np.abs(ours - oracle)[~mask].max()
    assert far <= 1e-6 * oracle.max()
    assert np.abs(ours - oracle)[mask].max() > 1e-3 * oracle.max()  # they do differ there
    # Each head adds exactly 1 in the renormalized map, the CSRNet Part A map loses mass.
    assert ours.sum() == pytest.approx(len(nuclei), abs=1e-4)
    if kernel == "adaptive":
        assert oracle.sum() < len(nuclei) - 0.5


def test_each_renormalized_head_adds_one(nuclei: np.ndarray) -> None:
    spec = DensitySpec()
    for pts, shape in tile_cases(nuclei)[1:]:
        assert density_map(pts, shape, spec).density.sum() == pytest.approx(len(pts), abs=1e-4)
    for corner in ([0.0, 0.0], [56.9, 0.0], [0.0, 39.9], [56.9, 39.9], [28.0, 0.2]):
        for kernel in ("adaptive", "fixed"):
            one = density_map(np.array([corner]), HAND_SHAPE, DensitySpec(kernel=kernel))
            assert one.density.sum() == pytest.approx(1.0, abs=1e-12)
