"""ShanghaiTech reader: layouts, both ground-truth spellings, grayscale, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures_crowd import (
    split_dir,
    write_crowd_root,
    write_mat_without_image_info,
    write_points,
)
from PIL import Image
from scipy.io import loadmat

from bench.util.errors import BenchError
from tasks.crowd_counting.data import (
    carve_validation,
    find_part,
    list_split,
    read_image,
    read_points,
)
from tasks.crowd_counting.sample import MARKER, is_sample, nuclei, tiles


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_sample_is_real_nuclei_annotation() -> None:
    image, points = nuclei()
    assert image.shape == (512, 512) and image.dtype == np.uint8
    assert points.shape == (125, 2)  # the 125 labelled instances of mask2d.tif
    # Part B tiles the whole image, so every centroid lands in exactly one tile.
    assert sum(len(p) for _, _, p, _ in tiles("B")) == 125
    # Part A drops 3 rows of every second tile, with the heads in them.
    assert 100 < sum(len(p) for _, _, p, _ in tiles("A")) < 125


@pytest.mark.parametrize("gt_dir", ["ground_truth", "ground-truth"])
def test_reader_on_both_spellings(tmp_path: Path, gt_dir: str) -> None:
    root = write_crowd_root(tmp_path, gt_dir=gt_dir)
    part = find_part("shanghaitech-b", root)
    train = list_split(part, "train")
    test = list_split(part, "test")
    assert [s.name for s in train] == [f"IMG_{i}" for i in range(1, 13)]  # natural order
    assert len(test) == 4
    assert all(s.annotation.parent.name == gt_dir for s in train + test)
    # The reader walks ShanghaiTech's nesting: image_info{1}.location.
    expected = [p for s, _, p, _ in tiles("B") if s == "train"]
    for sample, pts in zip(train, expected, strict=True):
        np.testing.assert_allclose(read_points(sample.annotation), pts)
        raw = loadmat(sample.annotation)["image_info"][0, 0][0, 0][0]
        np.testing.assert_allclose(raw, pts)  # the documented access path


def test_grayscale_images_become_rgb(crowd_root: Path) -> None:
    part = find_part("shanghaitech-a", crowd_root)
    samples = list_split(part, "train")
    modes = []
    for s in samples:
        with Image.open(s.image) as im:
            modes.append(im.mode)
    assert "L" in modes and "RGB" in modes  # Part A mixes both, like the real one
    for s, mode in zip(samples, modes, strict=True):
        rgb = read_image(s.image)
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
        if mode == "L":
            with Image.open(s.image) as im:
                gray = np.asarray(im)
            for c in range(3):
                np.testing.assert_array_equal(rgb[..., c], gray)
    # Part A sizes are not all multiples of 8, as in the real data.
    assert {read_image(s.image).shape[0] for s in samples} == {125, 128}


def test_layouts_found(tmp_path: Path) -> None:
    write_crowd_root(tmp_path / "ShanghaiTech")
    assert find_part("shanghaitech-a", tmp_path) == tmp_path / "ShanghaiTech" / "part_A"
    final = tmp_path / "x" / "ShanghaiTech_Crowd_Counting_Dataset" / "part_B_final"
    final.parent.mkdir(parents=True)
    shutil.copytree(tmp_path / "ShanghaiTech" / "part_B", final)
    assert find_part("shanghaitech-b", tmp_path / "x") == final


def test_missing_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError) as e:
        find_part("shanghaitech-a", tmp_path)
    assert "part_A" in _one_line(e) and str(tmp_path) in str(e.value)
    with pytest.raises(BenchError, match="unknown crowd counting dataset"):
        find_part("shanghaitech-c", tmp_path)


def test_mat_without_image_info(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path)
    mat = split_dir(root) / "ground_truth" / "GT_IMG_3.mat"
    write_mat_without_image_info(mat)
    with pytest.raises(BenchError) as e:
        read_points(mat)
    msg = _one_line(e)
    assert str(mat) in msg and "image_info" in msg


def test_not_a_mat_file(tmp_path: Path) -> None:
    bad = tmp_path / "GT_IMG_1.mat"
    bad.write_bytes(b"this is not matlab")
    with pytest.raises(BenchError) as e:
        read_points(bad)
    assert str(bad) in _one_line(e)


def test_image_without_annotation(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path)
    gone = split_dir(root, "A", "test") / "ground_truth" / "GT_IMG_2.mat"
    gone.unlink()
    with pytest.raises(BenchError) as e:
        list_split(root / "part_A", "test")
    msg = _one_line(e)
    assert "IMG_2.jpg" in msg and "no annotation" in msg and str(gone) in msg


def test_empty_folder(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path)
    images = split_dir(root, "B", "test") / "images"
    for p in images.iterdir():
        p.unlink()
    with pytest.raises(BenchError) as e:
        list_split(root / "part_B", "test")
    msg = _one_line(e)
    assert str(images) in msg and "no images" in msg


def test_missing_ground_truth_folder(tmp_path: Path) -> None:
    root = write_crowd_root(tmp_path)
    shutil.rmtree(split_dir(root) / "ground_truth")
    with pytest.raises(BenchError, match="ground_truth"):
        list_split(root / "part_B", "train")


def test_empty_and_bad_annotations(tmp_path: Path) -> None:
    mat = tmp_path / "GT_IMG_1.mat"
    write_points(mat, np.zeros((0, 2)))
    assert read_points(mat).shape == (0, 2)
    write_points(mat, np.array([[1.0, np.nan]]))
    with pytest.raises(BenchError, match="non-finite"):
        read_points(mat)


def test_validation_carve_is_fixed_and_disjoint(crowd_root: Path) -> None:
    samples = list_split(crowd_root / "part_B", "train")
    train, val = carve_validation(samples, 0.25, seed=0)
    assert len(val) == 3 and len(train) == 9
    assert not {s.name for s in train} & {s.name for s in val}
    again = carve_validation(list(reversed(samples)), 0.25, seed=0)[1]
    assert {s.name for s in again} == {s.name for s in val}  # names decide, not order
    other = {s.name for s in carve_validation(samples, 0.25, seed=1)[1]}
    assert other != {s.name for s in val}
    with pytest.raises(BenchError, match="at least 2"):
        carve_validation(samples[:1], 0.5, seed=0)


def test_sample_marker(crowd_root: Path) -> None:
    assert (crowd_root / MARKER).is_file()
    assert is_sample(crowd_root / "part_A")
