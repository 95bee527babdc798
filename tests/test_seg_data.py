"""Cityscapes layout checks, the labelIds-only refusal and labelIds -> trainIds conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_seg import random_ticket, tiny_run, write_cityscapes
from PIL import Image
from test_cityscapes_labels import OFFICIAL_TRAIN_ID

from bench.util.errors import BenchError
from tasks.segmentation.data import (
    CITYSCAPES_LABELS,
    LABEL_ID_SUFFIX,
    TRAIN_CLASSES,
    TRAIN_ID_SUFFIX,
    cityscapes_missing,
    convert_label_ids,
    id_to_train_id_lut,
    main,
)
from tasks.segmentation.sample import voc_photo
from tasks.segmentation.task import SegmentationTask


def test_fixture_is_a_usable_cityscapes_tree(cityscapes_root: Path) -> None:
    assert cityscapes_missing(cityscapes_root) is None
    assert SegmentationTask().missing("cityscapes", cityscapes_root) is None
    train = sorted((cityscapes_root / "gtFine/train").rglob(f"*{TRAIN_ID_SUFFIX}"))
    assert len(train) == 4
    values = set()
    for p in train:
        values |= set(np.unique(np.asarray(Image.open(p))).tolist())
    # building (2) from the VOC background and person (11), furniture ignored (255)
    assert {2, 11} <= values <= {2, 11, 255}


def test_sample_labels_are_the_photos_masks() -> None:
    rgb, ids = voc_photo()
    assert rgb.shape[:2] == ids.shape
    lut = id_to_train_id_lut()
    train = lut[ids]
    # 7 people in the photo: a real share of person pixels, and the rest mostly background.
    assert 0.05 < (train == 11).mean() < 0.6
    assert (train == 2).mean() > 0.2


def test_train_classes_match_mmseg() -> None:
    from tasks.segmentation import compat

    compat.ensure()
    from mmseg.datasets import CityscapesDataset

    assert TRAIN_CLASSES == tuple(CityscapesDataset.METAINFO["classes"])
    assert len({lid for _, lid, _ in CITYSCAPES_LABELS}) == 34


def test_mmseg_reads_the_fixture(cityscapes_root: Path) -> None:
    from tasks.segmentation import compat

    compat.ensure()
    from mmseg.datasets import CityscapesDataset

    ds = CityscapesDataset(
        data_root=str(cityscapes_root),
        data_prefix=dict(img_path="leftImg8bit/train", seg_map_path="gtFine/train"),
        pipeline=[],
    )
    assert len(ds) == 4
    assert all(d["seg_map_path"].endswith(TRAIN_ID_SUFFIX) for d in ds.load_data_list())


def test_label_ids_only_gives_one_line_error_and_converts(tmp_path: Path) -> None:
    root = write_cityscapes(tmp_path / "cs", train_ids=False)
    msg = SegmentationTask().missing("cityscapes", root)
    assert msg is not None and "\n" not in msg
    assert LABEL_ID_SUFFIX in msg and TRAIN_ID_SUFFIX in msg
    assert "python -m tasks.segmentation.data" in msg

    with pytest.raises(BenchError) as e:
        SegmentationTask().run(
            tiny_run(random_ticket(), "fcn", data_root=root, out_root=tmp_path / "out")
        )
    assert "\n" not in str(e.value) and LABEL_ID_SUFFIX in str(e.value)
    assert not (tmp_path / "out").exists()  # refused before any run directory

    assert main([str(root)]) == 0
    assert cityscapes_missing(root) is None
    # Checked against the official Cityscapes table (tests/test_cityscapes_labels.py), not
    # against fixtures written with our own lookup table.
    official = np.full(256, -1, dtype=np.int64)  # -1: an id the official table lacks
    for lid, tid in OFFICIAL_TRAIN_ID.items():
        official[lid] = tid
    converted = sorted(root.rglob(f"*{TRAIN_ID_SUFFIX}"))
    assert len(converted) == 6  # 4 train + 2 val
    for p in converted:
        src = p.with_name(p.name[: -len(TRAIN_ID_SUFFIX)] + LABEL_ID_SUFFIX)
        ids = np.asarray(Image.open(src)).astype(np.int64)
        assert (official[ids] >= 0).all()  # the fixture holds only official labelIds
        np.testing.assert_array_equal(np.asarray(Image.open(p)), official[ids])
    assert convert_label_ids(root) == 0  # existing trainIds files are kept


def test_missing_layouts_are_named(tmp_path: Path) -> None:
    assert "no --data-root" in cityscapes_missing(None)
    assert "not a folder" in cityscapes_missing(tmp_path / "nowhere")
    root = write_cityscapes(tmp_path / "cs")
    lab = next((root / "gtFine/val").rglob(f"*{TRAIN_ID_SUFFIX}"))
    lab.unlink()
    lab.with_name(lab.name.replace(TRAIN_ID_SUFFIX, LABEL_ID_SUFFIX)).unlink()
    msg = cityscapes_missing(root)
    assert msg is not None and "lack a label" in msg and lab.name in msg
    assert "unknown dataset" in SegmentationTask().missing("ade20k", root)
    # A shared data root holding cityscapes/ among other datasets is found too.
    write_cityscapes(tmp_path / "shared" / "cityscapes")
    assert cityscapes_missing(tmp_path / "shared") is None
    assert "also looked in" in cityscapes_missing(tmp_path)
