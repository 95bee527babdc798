"""Density maps, count-preserving downsampling, augmentation consistency and the HDF5 cache."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from fixtures_crowd import split_dir, write_crowd_root, write_points
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from scipy.spatial import KDTree

from bench.ticket.schema import make_ticket
from bench.util.errors import BenchError
from tasks.crowd_counting.cache import cache_path, cached_density, read_density
from tasks.crowd_counting.data import list_split, read_image, read_points
from tasks.crowd_counting.dataset import Item, TrainCrops, augment, crop_box, to_tensor
from tasks.crowd_counting.density import (
    DensitySpec,
    csrnet_fixed,
    density_map,
    gaussian_kernel1d,
    head_sigmas,
    reflected_kernel,
    sum_pool,
)
from tasks.crowd_counting.model import CrowdCounter

RNG = np.random.default_rng(7)
SHAPE = (61, 83)  # deliberately not multiples of 8
# Heads near every border (their kernels are cut) and in the middle.
POINTS = np.concatenate(
    [
        np.array([[0.2, 0.7], [82.9, 60.5], [0.5, 40.0], [41.0, 0.1], [40.0, 30.0]]),
        np.stack([RNG.uniform(0, SHAPE[1], 25), RNG.uniform(0, SHAPE[0], 25)], axis=1),
    ]
)


def naive_cut(points: np.ndarray, shape: tuple[int, int], kernel: str, sigma: float) -> np.ndarray:
    """border="cut" written out independently of density.py: pixel (floor(y), floor(x)),
    sigma 0.3 x mean distance to the 3 nearest other heads (or fixed), one full-image
    float64 gaussian_filter(mode="constant") per head. CSRNet's own algorithm is checked
    against its notebook in tests/test_csrnet_oracle.py."""
    pix = np.floor(points).astype(np.int64)  # (col, row)
    if kernel == "adaptive":
        d, _ = KDTree(pix.astype(np.float64)).query(pix.astype(np.float64), k=4)
        sigmas = 0.3 * (d[:, 1] + d[:, 2] + d[:, 3]) / 3
    else:
        sigmas = np.full(len(pix), sigma)
    out = np.zeros(shape)
    for (col, row), s in zip(pix.tolist(), sigmas.tolist()):
        delta = np.zeros(shape)
        delta[row, col] = 1.0
        out += gaussian_filter(delta, s, mode="constant")
    return out


@pytest.mark.parametrize("kernel", ["adaptive", "fixed"])
def test_cut_equals_an_independent_naive_reference(kernel: str) -> None:
    spec = DensitySpec(kernel=kernel, sigma=6.0, border="cut")
    fast = density_map(POINTS, SHAPE, spec).density
    naive = naive_cut(POINTS, SHAPE, kernel, 6.0)
    assert np.abs(fast - naive).max() <= 1e-12 * naive.max()


@pytest.mark.parametrize("size", [5, 40, 200])
def test_reflected_kernel_is_scipys_reflect_response(size: int) -> None:
    # Impulses at both ends and inside; at size 5 the 61-tap kernel folds several times.
    kernel = gaussian_kernel1d(7.5)
    for center in sorted({0, 1, size // 2, size - 2, size - 1}):
        delta = np.zeros(size)
        delta[center] = 1.0
        scipy_line = gaussian_filter1d(delta, 7.5, mode="reflect")
        first, values = reflected_kernel(center, size, kernel)
        ours = np.zeros(size)
        ours[first : first + len(values)] = values
        np.testing.assert_allclose(ours, scipy_line, rtol=0, atol=1e-15)
        assert ours.sum() == pytest.approx(1.0, abs=1e-12)  # reflect keeps the mass


# The footprint path (few heads; on 48 x 70 the 121-tap kernel folds several times; on
# 300 x 400 most heads fold nowhere and share one patch), and the filter (400 heads: more
# work on footprints than 1/3 of the filter's).
@pytest.mark.parametrize(("shape", "heads"), [((48, 70), 1), ((120, 150), 12), ((300, 400), 40),
                                              ((48, 70), 400)])  # fmt: skip
def test_csrnet_part_b_equals_one_scipy_filter(shape: tuple[int, int], heads: int) -> None:
    rng = np.random.default_rng(heads)
    gt = np.zeros(shape)
    gt[rng.integers(0, shape[0], heads), rng.integers(0, shape[1], heads)] = 1.0
    gt[0, 0] = gt[-1, -1] = gt[0, -1] = 1.0  # corners: kernels folded on two sides
    spec = DensitySpec(kernel="fixed", sigma=15.0, border="csrnet")
    ref = gaussian_filter(gt, 15.0)  # CSRNet's Part B: mode "reflect", float64
    ours = csrnet_fixed(*np.nonzero(gt), shape, spec)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15 * gt.sum())


@pytest.mark.parametrize("kernel", ["adaptive", "fixed"])
def test_renormalized_maps_sum_to_the_head_count(kernel: str) -> None:
    spec = DensitySpec(kernel=kernel, sigma=6.0)
    dm = density_map(POINTS, SHAPE, spec)
    assert dm.annotated == dm.placed == len(POINTS) and dm.outside == 0
    assert dm.density.sum() == pytest.approx(len(POINTS), abs=1e-9)
    # The original (cut) behaviour loses the mass outside the image.
    cut = density_map(POINTS, SHAPE, DensitySpec(kernel=kernel, sigma=6.0, border="cut"))
    assert cut.density.sum() < len(POINTS) - 1.0
    # Each head adds exactly 1, also alone in a corner.
    corner = density_map(np.array([[0.0, 0.0]]), SHAPE, spec).density
    assert corner.sum() == pytest.approx(1.0, abs=1e-12)


def test_outside_points_are_counted_not_lost() -> None:
    pts = np.array([[10.0, 10.0], [-3.0, 5.0], [90.0, 20.0], [20.0, 61.0]])  # 3 outside
    clip = density_map(pts, SHAPE, DensitySpec(kernel="fixed", sigma=3.0))
    assert (clip.annotated, clip.outside, clip.placed) == (4, 3, 4)
    assert clip.density.sum() == pytest.approx(4.0)
    drop = density_map(pts, SHAPE, DensitySpec(kernel="fixed", sigma=3.0, outside="drop"))
    assert (drop.annotated, drop.outside, drop.placed) == (4, 3, 1)
    assert drop.density.sum() == pytest.approx(1.0)


def test_adaptive_sigma_geometry() -> None:
    # A 10-pixel square grid: every head's 3 nearest are at 10, 10 and 10 or 10*sqrt(2).
    rows, cols = np.meshgrid(np.arange(0, 50, 10), np.arange(0, 50, 10), indexing="ij")
    r, c = rows.ravel(), cols.ravel()
    sig = head_sigmas(r, c, (60, 60), DensitySpec())
    assert sig[12] == pytest.approx(0.3 * 10.0)  # the centre: 4 neighbours at 10
    assert sig[0] == pytest.approx(0.3 * (10 + 10 + 10 * np.sqrt(2)) / 3)  # a corner
    # A lone head: CSRNet's fallback, a quarter of the mean side.
    assert head_sigmas(np.array([5]), np.array([5]), (60, 100), DensitySpec())[0] == 20.0
    # Two heads: the mean runs over the one neighbour there is.
    two = head_sigmas(np.array([0, 0]), np.array([0, 8]), (60, 60), DensitySpec())
    np.testing.assert_allclose(two, [2.4, 2.4])
    # Stacked heads (distance 0) become one-pixel kernels, as gaussian_filter does.
    assert gaussian_kernel1d(0.0).tolist() == [1.0]


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_sum_pool_preserves_count(factor: int) -> None:
    dm = density_map(POINTS, SHAPE, DensitySpec(sigma=4.0, kernel="fixed")).density
    pooled = sum_pool(dm, factor)
    assert pooled.shape == (-(-SHAPE[0] // factor), -(-SHAPE[1] // factor))  # ceil
    assert pooled.sum() == pytest.approx(len(POINTS), abs=1e-9)
    t = sum_pool(torch.from_numpy(dm)[None, None], factor)
    assert t.shape[-2:] == pooled.shape
    np.testing.assert_allclose(t[0, 0].numpy(), pooled, atol=1e-12)
    # Each cell holds exactly the mass of its factor x factor block.
    assert pooled[0, 0] == pytest.approx(dm[:factor, :factor].sum())


def test_pooled_map_matches_the_network_output_grid() -> None:
    ticket = make_ticket(
        "r18", "resnet18", "se", [1, 0] * 4, {"kind": "baseline", "baseline": "random", "seed": 0}
    )
    model = CrowdCounter(ticket).eval()
    assert model.output_stride == 8
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *SHAPE))
    assert out.shape[-2:] == sum_pool(np.zeros(SHAPE), 8).shape


def test_augment_keeps_image_and_density_together() -> None:
    # Image channel 0 IS the density map: after any crop/flip they must still agree.
    dm = density_map(POINTS, SHAPE, DensitySpec(sigma=3.0, kernel="fixed")).density
    image = np.zeros((*SHAPE, 3), dtype=np.uint8)
    image[..., 0] = np.round(dm / dm.max() * 255).astype(np.uint8)
    flipped = 0
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        img, den = augment(image, dm, (32, 48), flip=True, stride=1, generator=g)
        chan = img[0] * 0.229 + 0.485  # undo the normalization of channel 0
        expect = torch.from_numpy(dm).float()
        g = torch.Generator().manual_seed(seed)
        y0, y1, x0, x1 = crop_box(SHAPE, (32, 48), g)
        window = expect[y0:y1, x0:x1]
        is_flipped = not torch.allclose(den[0], window, atol=1e-6)
        flipped += is_flipped
        if is_flipped:
            window = window.flip(-1)
        torch.testing.assert_close(den[0], window, atol=1e-6, rtol=0)
        scaled = (window / dm.max() * 255).round() / 255
        torch.testing.assert_close(chan, scaled, atol=1e-5, rtol=0)
    assert 0 < flipped < 12  # both branches ran
    # Pooling after cropping keeps the crop's mass.
    img, den = augment(image, dm, (32, 48), flip=True, stride=8)
    assert den.shape == (1, 4, 6)
    with pytest.raises(BenchError, match="multiples of the stride"):
        augment(image, dm, (30, 48), flip=False, stride=8)


def test_train_crops_read_the_matching_window(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path)
    sample = list_split(root / "part_A", "train")[1]  # 125 x 128
    entry = cached_density(sample, DensitySpec())
    item = Item(sample.image, entry.path, entry.annotated, entry.shape)
    full = read_density(entry.path)
    image = read_image(sample.image)
    ds = TrainCrops([item], stride=8, crop=(64, 64), crops_per_image=3)
    assert len(ds) == 3
    for seed in range(4):
        torch.manual_seed(seed)
        img, den = ds[0]
        torch.manual_seed(seed)
        y0, y1, x0, x1 = crop_box(entry.shape, (64, 64))
        flip = bool(torch.rand(()) < 0.5)
        want_img = to_tensor(image[y0:y1, x0:x1])
        want_den = torch.from_numpy(full[y0:y1, x0:x1])[None]
        if flip:
            want_img, want_den = want_img.flip(-1), want_den.flip(-1)
        torch.testing.assert_close(img, want_img)
        torch.testing.assert_close(den, sum_pool(want_den, 8))
    # Half-size crops (crop=None): half the height and width, rounded down to the stride.
    half = TrainCrops([item], stride=8, crop=None)
    img, den = half[0]
    assert img.shape == (3, 56, 64) and den.shape == (1, 7, 8)


# ---- cache ----------------------------------------------------------------------------------
def test_cache_beside_annotations_and_reuse(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path)
    sample = list_split(root / "part_B", "train")[0]
    spec = DensitySpec(kernel="fixed", sigma=15.0)
    first = cached_density(sample, spec)
    assert first.built and first.path.parent == sample.annotation.parent
    assert first.annotated == len(read_points(sample.annotation))
    assert first.mass == pytest.approx(first.annotated, abs=1e-6)
    with h5py.File(first.path) as f:
        assert f.attrs["density_border"] == "renormalize"
        assert f.attrs["density_sigma"] == 15.0 and f.attrs["density_kernel"] == "fixed"
        assert f["density"].shape == (128, 128)
    mtime = first.path.stat().st_mtime_ns
    again = cached_density(sample, spec)
    assert not again.built and first.path.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(read_density(first.path).sum(), first.annotated, atol=1e-4)


@pytest.mark.parametrize(
    "change",
    [
        {"sigma": 4.0},
        {"border": "cut"},
        {"border": "csrnet"},
        {"kernel": "adaptive"},
        {"outside": "drop"},
        {"beta": 0.2},
    ],
)
def test_cache_made_with_other_parameters_is_rebuilt(tmp_path: Path, change: dict) -> None:
    root = write_crowd_root(tmp_path)
    sample = list_split(root / "part_B", "train")[0]
    base = DensitySpec(kernel="fixed", sigma=15.0)
    old = read_density(cached_density(sample, base).path)
    other = DensitySpec(**{**base.as_dict(), **change})
    entry = cached_density(sample, other)
    assert entry.built
    want = density_map(read_points(sample.annotation), entry.shape, other).density
    new = read_density(entry.path)
    np.testing.assert_allclose(new, want.astype(np.float32))
    if "sigma" in change or "border" in change:
        assert not np.allclose(new, old)
    with h5py.File(entry.path) as f:
        for k, v in change.items():
            assert f.attrs[f"density_{k}"] == v


def test_cache_rebuilt_when_the_annotation_changes(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path)
    sample = list_split(root / "part_B", "train")[0]
    spec = DensitySpec(kernel="fixed", sigma=15.0)
    cached_density(sample, spec)
    write_points(sample.annotation, np.array([[5.0, 5.0], [60.0, 60.0], [130.0, 7.0]]))
    entry = cached_density(sample, spec)
    assert entry.built and (entry.annotated, entry.outside, entry.placed) == (3, 1, 3)
    assert read_density(entry.path).sum() == pytest.approx(3.0, abs=1e-5)


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path)
    sample = list_split(root / "part_B", "train")[0]
    spec = DensitySpec(kernel="fixed")
    path = cache_path(sample)
    path.write_bytes(b"half a file")
    entry = cached_density(sample, spec)
    assert entry.built and entry.path == path
    assert read_density(path).sum() == pytest.approx(entry.annotated, abs=1e-4)


def test_cache_dir_and_read_only_annotations(tmp_path: Path, monkeypatch) -> None:
    root = write_crowd_root(tmp_path / "data")
    gt = split_dir(root, "B", "test") / "ground_truth"
    sample = list_split(root / "part_B", "test")[0]
    explicit = cached_density(sample, DensitySpec(kernel="fixed"), tmp_path / "cache")
    assert explicit.built and explicit.path.is_relative_to(tmp_path / "cache")
    assert not list(gt.glob("*.h5"))  # an explicit cache folder is always used
    # A second part with the same image names gets its own subfolder.
    other = list_split(root / "part_A", "test")[0]
    assert cache_path(other, tmp_path / "cache").parent != explicit.path.parent
    if os.geteuid() == 0:
        pytest.skip("root can write to a read-only folder: fallback not observable")
    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path / "user-cache"))
    gt.chmod(0o555)
    try:
        entry = cached_density(sample, DensitySpec(kernel="fixed"))
    finally:
        gt.chmod(0o755)
    assert entry.path.is_relative_to(tmp_path / "user-cache")
