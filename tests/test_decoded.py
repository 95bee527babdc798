"""Decode once: an image folder's scoring set kept as a uint8 array on disk gives the very
scores of decoding every JPEG, is reused by later processes, and is never trusted half
written or damaged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_imagefolder
from fixtures_search import one_thread_fixture  # noqa: F401  (fixture "one_thread")

from bench.data.datasets import SplitView, load_splits
from bench.data.decoded import DecodedSet, decoded_set
from bench.data.imagefolder import ImageFiles
from bench.models.resnet import build_model
from bench.search.evaluator import SupernetScorer
from bench.search.scoring_set import CachedSet, PreloadedSet, StreamedSet
from bench.util.errors import DataError
from bench.util.faults import ENV_KILL_AT

pytestmark = pytest.mark.usefixtures("one_thread")

MASKS = [(1,) * 9, (0,) * 9, (1, 0, 0, 1, 1, 0, 1, 0, 1), (0, 1, 1, 0, 1, 0, 0, 1, 1)]
SIZE = 32  # eval: Resize 37 + CenterCrop 32 of the fixture's 72x56 to 88x72 JPEGs


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """Its own copy: tests here damage files."""
    return write_imagefolder(tmp_path / "in", classes=4, train_per_class=6)


def _heldout(root: Path, cache: Path | None) -> SplitView:
    """The held-out view (3 per class); cache None: a reader without a cache (decodes)."""
    s = load_splits("imagenet", root, heldout="3/class", image_size=SIZE, cache_dir=cache)
    if cache is None:
        return SplitView(ImageFiles(str(root / "train")), s.heldout.indices, s.heldout.transform)
    return s.heldout


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet20-se", num_classes=4).eval()


def _scores(scorer: SupernetScorer) -> list:
    return [scorer(m, n) for n in (12, 5) for m in MASKS]


def test_cache_scores_equal_decoding_every_jpeg(root: Path, tmp_path: Path, net) -> None:
    cache = tmp_path / "cache"
    decode = SupernetScorer(net, _heldout(root, None), "cpu", batch_size=5, preload_mb=0)
    notes: list[str] = []
    cached = SupernetScorer(
        net, _heldout(root, cache), "cpu", batch_size=5, preload_mb=0, log=notes.append
    )
    assert isinstance(decode.source, StreamedSet) and isinstance(cached.source, CachedSet)
    assert notes and notes[0].startswith("decoding 12 images once into ")
    ref = _scores(decode)
    assert _scores(cached) == ref  # bit for bit, loss included
    # Preloaded from the cache: the same tensors as preloading by decoding.
    pre = SupernetScorer(net, _heldout(root, cache), "cpu", batch_size=5)
    pre_decode = SupernetScorer(net, _heldout(root, None), "cpu", batch_size=5)
    assert isinstance(pre.source, PreloadedSet) and torch.equal(pre.source.x, pre_decode.source.x)
    assert _scores(pre) == ref
    # A later process reads the cache: with every JPEG made undecodable (same size and
    # time, so the same key) it still scores, so no candidate decodes a JPEG.
    for path, _ in ImageFiles(str(root / "train")).samples:
        st = os.stat(path)
        Path(path).write_bytes(b"\0" * st.st_size)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    later: list[str] = []
    again = SupernetScorer(
        net, _heldout(root, cache), "cpu", batch_size=5, preload_mb=0, log=later.append
    )
    assert later == [] and _scores(again) == ref


def test_value_table_gives_the_bits_of_the_tensor_steps(root: Path, tmp_path: Path) -> None:
    got = decoded_set(_heldout(root, tmp_path / "cache"))
    assert got is not None and got._table is not None
    u8 = np.random.default_rng(0).integers(0, 256, (6, *got.pixels.shape[1:]), dtype=np.uint8)
    table = DecodedSet(u8, np.zeros(6, dtype=np.int64), got.plan)
    assert torch.equal(table.batch(0, 6)[0], got.plan(torch.from_numpy(u8.copy())))


def test_an_edited_file_makes_a_new_cache(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = decoded_set(_heldout(root, cache))
    path = ImageFiles(str(root / "train")).samples[_heldout(root, cache).indices[0]][0]
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
    assert first is not None and decoded_set(_heldout(root, cache)) is not None
    assert len(list((cache / "decoded").glob("*.npy"))) == 2


@pytest.mark.parametrize("damage", ["truncated array", "no json", "garbage json", "no array"])
def test_a_damaged_cache_is_rebuilt(root: Path, tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    first = decoded_set(_heldout(root, cache))
    assert first is not None
    ref = np.array(first.pixels)
    (array,) = (cache / "decoded").glob("*.npy")
    meta = array.with_suffix(".json")
    if damage == "truncated array":  # a new file: truncating a mapped one in place is SIGBUS
        head = array.read_bytes()[:1000]
        array.unlink()
        array.write_bytes(head)
    elif damage == "no json":  # a write killed between the two renames
        meta.unlink()
    elif damage == "garbage json":
        meta.write_text("{not json")
    else:
        array.unlink()
    notes: list[str] = []
    got = decoded_set(_heldout(root, cache), log=notes.append)
    assert got is not None and (got.pixels == ref).all()
    assert notes[-1].startswith("decoding 12 images once")
    if damage != "no json":
        assert str(meta) in notes[0] and "building it again" in notes[0]


def test_a_killed_build_leaves_nothing_trusted(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    code = (
        "import sys; sys.path[:0] = ['tests']; from test_decoded import _heldout; "
        "from pathlib import Path; from bench.data.decoded import DecodedSet, decoded_set; "
        f"decoded_set(_heldout(Path({str(root)!r}), Path({str(cache)!r})))"
    )  # fmt: skip
    # One batch of 64 holds all 12 images: the kill lands after they are written, before
    # the temporary array is renamed.
    env = {**os.environ, ENV_KILL_AT: "decoded.batch"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).parents[1])
    assert proc.returncode == -9
    left = list((cache / "decoded").iterdir())
    assert [p.name.endswith(".tmp") for p in left] == [True]  # the killed writer's temp only
    notes: list[str] = []
    assert decoded_set(_heldout(root, cache), log=notes.append) is not None
    assert len(notes) == 1 and not any(p.name.endswith(".tmp") for p in left[0].parent.iterdir())


def test_an_unreadable_image_names_the_file_and_leaves_no_cache(root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    view = _heldout(root, cache)
    bad = view.base.samples[view.indices[4]][0]
    Path(bad).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="unreadable image") as err:
        decoded_set(view)
    assert bad in str(err.value) and "\n" not in str(err.value)
    assert list((cache / "decoded").iterdir()) == []


def test_an_unwritable_cache_folder_falls_back_to_decoding(root: Path, tmp_path: Path, net) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")
    notes: list[str] = []
    scorer = SupernetScorer(
        net, _heldout(root, blocker), "cpu", batch_size=5, preload_mb=0, log=notes.append
    )
    assert isinstance(scorer.source, StreamedSet) and "no decode cache" in notes[-1]
    assert str(blocker / "decoded") in notes[-1]
