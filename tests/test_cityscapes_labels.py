"""Cityscapes labelId -> trainId against the official label table, not against our own.

The converter (tasks/segmentation/data.py) is run on a real *_gtFine_labelIds.png that holds
every labelId 0..33, and the *_gtFine_labelTrainIds.png it writes is read back and checked
pixel by pixel against the table below, which is copied by hand from the official source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tasks.segmentation.data import (
    CITYSCAPES_LABELS,
    LABEL_ID_SUFFIX,
    TRAIN_CLASSES,
    TRAIN_ID_SUFFIX,
    main,
)

# The official Cityscapes label definition: the `labels` list of
# cityscapesscripts/helpers/labels.py in https://github.com/mcordts/cityscapesScripts
# (master, commit 0bcc4a72549590fd80d71d8465be3a0c4b1c06e8; the table is unchanged there
# since 2016), columns Label(name, id, trainId, ...). mmseg's own converter
# (tools/dataset_converters/cityscapes.py) writes *_labelTrainIds.png through
# cityscapesscripts' json2labelImg(..., "trainIds"), i.e. with this same table.
# trainId 255 = not evaluated. The 35th entry, ("license plate", -1, -1), has no labelId
# (it never appears in a labelIds PNG) and is left out here, as in our converter.
OFFICIAL_LABELS: tuple[tuple[str, int, int], ...] = (
    # name                   id  trainId
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
OFFICIAL_TRAIN_ID: dict[int, int] = {lid: tid for _, lid, tid in OFFICIAL_LABELS}


def test_official_table_is_complete() -> None:
    # Sanity on the copy itself: ids 0..33 once each, trainIds 0..18 once each plus 255.
    assert sorted(OFFICIAL_TRAIN_ID) == list(range(34))
    train = sorted(t for t in OFFICIAL_TRAIN_ID.values() if t != 255)
    assert train == list(range(19))
    assert sum(t == 255 for t in OFFICIAL_TRAIN_ID.values()) == 15


def test_our_table_and_class_order_are_the_official_ones() -> None:
    assert tuple(CITYSCAPES_LABELS) == OFFICIAL_LABELS
    by_train_id = {tid: name for name, _, tid in OFFICIAL_LABELS if tid != 255}
    assert TRAIN_CLASSES == tuple(by_train_id[t] for t in range(19))


def test_converter_output_matches_the_official_table(tmp_path: Path) -> None:
    # 4 x 34 labelIds image: every id 0..33 in every row, each row in another order, so a
    # converter that mapped by position rather than by value would fail too.
    rng = np.random.default_rng(0)
    ids = np.stack([np.arange(34), np.arange(34)[::-1], rng.permutation(34), rng.permutation(34)])
    ids = ids.astype(np.uint8)
    ann = tmp_path / "cs" / "gtFine" / "val" / "frankfurt"
    ann.mkdir(parents=True)
    src = ann / f"frankfurt_000000_000294{LABEL_ID_SUFFIX}"
    Image.fromarray(ids, mode="L").save(src)  # 8-bit grey, like the official labelIds PNGs
    with Image.open(src) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), ids)

    assert main([str(tmp_path / "cs")]) == 0  # python -m tasks.segmentation.data DIR

    dst = ann / f"frankfurt_000000_000294{TRAIN_ID_SUFFIX}"
    with Image.open(dst) as im:
        assert im.mode == "L"
        out = np.asarray(im)
    assert out.shape == ids.shape
    for (r, c), lid in np.ndenumerate(ids):
        assert out[r, c] == OFFICIAL_TRAIN_ID[int(lid)], (r, c, int(lid))
    # Every official pair was seen: all 19 trainIds and the ignore value come out.
    assert set(np.unique(out).tolist()) == set(range(19)) | {255}
