"""The evaluator: inherited-weight scores, BN recalibration, cache, budget, subsets, halving,
shared work between candidates and the fast (folded BN, channels_last) path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures_search import one_thread_fixture  # noqa: F401  (fixture "one_thread")
from torch.nn.modules.batchnorm import _BatchNorm

from bench.data.datasets import load_splits
from bench.engine.loop import evaluate
from bench.models.resnet import build_model
from bench.models.slots import materialize
from bench.search.bn_policy import RecalibratedBN, fold_batchnorm
from bench.search.budget import Budget
from bench.search.evaluator import (
    Evaluator,
    SupernetScorer,
    TableScorer,
    fixed_subset,
    mask_key,
)
from bench.search.prefix_cache import PrefixCache, StageCache
from bench.search.reward import measure_slot_latency
from bench.search.run import recalibration_batches
from bench.search.scoring_set import PreloadedSet, StreamedSet
from bench.util.errors import BenchError

pytestmark = pytest.mark.usefixtures("one_thread")

MASKS = [(1,) * 9, (0,) * 9, (1, 0, 0, 1, 1, 0, 1, 0, 1)]


@pytest.fixture(scope="module")
def splits(search_fmnist_root: Path):
    return load_splits("fashion-mnist", search_fmnist_root, image_size=16)


@pytest.fixture()
def supernet(splits):
    """A resnet20-se supernet whose BN statistics come from real training images."""
    torch.manual_seed(0)
    net = build_model("resnet20-se", num_classes=10)
    net.train()
    with torch.no_grad():
        for i in range(3):
            net.set_mask(MASKS[i % 3])
            net(torch.stack([splits.train[j][0] for j in range(i * 32, i * 32 + 32)]))
    return net.eval()


def _state(net) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_score_equals_the_materialized_network(splits, supernet) -> None:
    scorer = SupernetScorer(supernet, splits.heldout, "cpu", batch_size=16)
    assert scorer.size == len(splits.heldout) == 40
    for mask in MASKS:
        got = scorer(mask, scorer.size)
        ref = evaluate(materialize(supernet, mask), splits.heldout, "cpu", batch_size=7)
        assert got.top1 == ref["top1"] and got.n == ref["n"]
        assert got.loss == pytest.approx(ref["loss"], rel=1e-5)
    # A prefix of the scoring set: the first n images only.
    part = scorer(MASKS[2], 10)
    ref = evaluate(
        materialize(supernet, MASKS[2]),
        torch.utils.data.Subset(splits.heldout, range(10)),
        "cpu",
    )
    assert part.n == 10 and part.top1 == ref["top1"]


def test_streamed_scoring_equals_preloaded(splits, supernet) -> None:
    pre = SupernetScorer(supernet, splits.heldout, "cpu", batch_size=16)
    stream = SupernetScorer(supernet, splits.heldout, "cpu", batch_size=16, preload_mb=0)
    assert isinstance(pre.source, PreloadedSet) and isinstance(stream.source, StreamedSet)
    for mask in MASKS:
        assert pre(mask, 40) == stream(mask, 40)


def test_sources_yield_the_same_batches(splits) -> None:
    cpu = torch.device("cpu")
    pre = PreloadedSet.load(splits.heldout, 16, 0, cpu)
    stream = StreamedSet(splits.heldout, 16, 0, cpu)
    got, ref = list(pre.batches(37)), list(stream.batches(37))
    assert [s for s, _, _ in got] == [s for s, _, _ in ref] == [(0, 16), (16, 32), (32, 37)]
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(got, ref))


def test_recalibrated_bn_restores_the_statistics(splits, supernet) -> None:
    before = _state(supernet)
    policy = RecalibratedBN(supernet, recalibration_batches(splits.train, 1, 16))
    policy.set_mask(MASKS[2])
    with policy.scoring():
        changed = _state(supernet)
        assert not supernet.training
    assert any(not torch.equal(before[k], changed[k]) for k in before)
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())


def test_prefix_cache_alone_resumes_from_a_shared_prefix(supernet) -> None:
    prefix = PrefixCache(supernet, 2**24)
    x = torch.randn(4, 3, 16, 16)
    with torch.inference_mode():
        for mask in (MASKS[2], (1, 0, 0, 1, 1, 0, 1, 1, 1)):  # agree on the first 7 bits
            supernet.set_mask(mask)
            assert torch.equal(prefix.logits(supernet, mask, (0, 4), x), supernet(x))
    assert prefix.blocks_skipped == 7


def test_bn_recalibration_matches_manual_and_restores(splits, supernet) -> None:
    batches = recalibration_batches(splits.train, 2, 16)
    assert [len(b) for b in batches] == [16, 16]
    again = recalibration_batches(splits.train, 2, 16)  # fixed: same images, same augment
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    before = _state(supernet)
    scorer = SupernetScorer(supernet, splits.heldout, "cpu", recalib_batches=batches)
    plain = SupernetScorer(supernet, splits.heldout, "cpu")
    mask = MASKS[2]
    got = scorer(mask, scorer.size)

    manual = materialize(supernet, mask)
    for m in manual.modules():
        if isinstance(m, _BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    manual.train()
    with torch.no_grad():
        for b in batches:
            manual(b)
    ref = evaluate(manual, splits.heldout, "cpu")
    assert got.top1 == ref["top1"]
    assert got.loss == pytest.approx(ref["loss"], rel=1e-5)
    assert got.loss != pytest.approx(plain(mask, plain.size).loss, rel=1e-5)
    # The supernet's own weights and BN statistics are untouched.
    after = supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.momentum == 0.1 for m in supernet.modules() if isinstance(m, _BatchNorm))


def test_cache_never_scores_a_mask_twice_and_budget_is_exact() -> None:
    table = {mask_key(m): float(i) for i, m in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)])}
    scorer = TableScorer(table, size=10)
    ev = Evaluator(scorer, Budget(3, 10))
    out = ev.evaluate([(0, 1), (1, 0), (0, 1), (1, 1), (0, 0)])
    # Three paid evaluations and one cache hit; the fifth mask is beyond the budget.
    assert [(e.mask, e.cached, e.cost) for e in out] == [
        ((0, 1), False, 10),
        ((1, 0), False, 10),
        ((0, 1), True, 0),
        ((1, 1), False, 10),
    ]
    assert scorer.calls == 3 and ev.budget.spent == 3.0 and ev.budget.exhausted
    assert ev.known((1, 1)) and not ev.known((0, 0))
    assert ev.evaluate([(1, 0)])[0].cached  # still free when the budget is spent
    assert ev.evaluate([(0, 0)]) == []
    # The cache and budget survive a state round trip.
    fresh = Evaluator(TableScorer(table, size=10), Budget(3, 10))
    fresh.load_state_dict(ev.state_dict())
    assert fresh.cache == ev.cache and fresh.budget.spent_images == 30


def test_successive_halving_promotes_the_best() -> None:
    masks = [tuple(int(b) for b in f"{i:04b}") for i in range(9)]
    table = {mask_key(m): float((7 * i) % 9) for i, m in enumerate(masks)}  # best: i = 5
    ev = Evaluator(TableScorer(table, size=90), Budget(10, 90))
    assert ev.rung_sizes(3, 10) == [10, 30, 90]
    acts, final = ev.halving(masks, key=lambda e: e.top1, eta=3, min_images=10)
    assert [a.n_images for a in acts] == [10] * 9 + [30] * 3 + [90]
    assert [e.index for e in final] == list(range(9))
    assert [e.index for e in final if e.final] == [5]
    assert ev.budget.spent_images == 9 * 10 + 3 * 30 + 90  # = 3 evaluations
    # Promoted: the top third of rung 0, by key.
    assert sorted(a.index for a in acts if a.n_images == 30) == [1, 5, 6]  # values 8, 7, 6

    # A budget that runs out mid-rung stops there, never over it.
    tight = Evaluator(TableScorer(table, size=90), Budget(2, 90))
    acts, final = tight.halving(masks, key=lambda e: e.top1, eta=3, min_images=10)
    assert tight.budget.spent_images <= 180 and not any(e.final for e in final)
    assert len(acts) == 9 + 3  # rung 0 (90 images) + rung 1 (90 images) = the whole budget


def test_fixed_subset_is_deterministic_and_nested() -> None:
    a, b = fixed_subset(100, 30, seed=4), fixed_subset(100, 30, seed=4)
    assert list(a) == list(b) and len(set(a.tolist())) == 30
    assert list(fixed_subset(100, 10, seed=4)) == list(a[:10])
    assert sorted(fixed_subset(100, 0).tolist()) == list(range(100))


def test_slot_latency_table(supernet) -> None:
    supernet.set_mask(MASKS[2])
    table = measure_slot_latency(supernet, (2, 3, 16, 16), warmup=1, repeats=3)
    assert len(table["slot_ms"]) == 9 and all(t > 0 for t in table["slot_ms"])
    assert table["base_ms"] > 0
    assert supernet.mask == MASKS[2] and not supernet.training


# --- shared work between candidates (stage cache) and the opt-in fast path ---------------
# Masks agreeing on first bits (0, 3, 6 and 8 of 9), then the same masks on prefixes of the
# scoring set (other batch spans), as successive halving asks.
STREAM = [
    (1, 0, 0, 1, 1, 0, 1, 0, 1),
    (1, 0, 0, 1, 1, 0, 1, 0, 0),
    (1, 0, 0, 1, 1, 0, 0, 1, 1),
    (1, 0, 0, 0, 0, 1, 1, 1, 1),
    (0, 1, 1, 1, 1, 0, 1, 0, 1),
    (1, 0, 0, 1, 1, 0, 1, 0, 1),
]


def _stream_scores(scorer: SupernetScorer) -> list:
    return [scorer(m, n) for n in (40, 12) for m in STREAM]


@pytest.mark.parametrize("model", ["resnet20-se", "resnet20-dia"])  # dia: stateful SAM
def test_shared_work_changes_no_bit_of_any_score(splits, model: str) -> None:
    torch.manual_seed(0)
    net = build_model(model, num_classes=10).train()
    with torch.no_grad():  # BN statistics from real images, every slot on
        net(torch.stack([splits.train[j][0] for j in range(32)]))
    net.eval()
    plain = SupernetScorer(net, splits.heldout, "cpu", batch_size=16, cache_mb=0)
    shared = SupernetScorer(net, splits.heldout, "cpu", batch_size=16)
    assert plain.stage_cache is None and shared.stage_cache is not None
    assert _stream_scores(shared) == _stream_scores(plain)  # exactly equal, loss included
    # It did resume from cached blocks: at least from block 3 for the 2nd, 3rd, 6th masks.
    assert shared.blocks_skipped >= 3 * 3


def test_no_shared_work_while_bn_is_recalibrated(splits, supernet) -> None:
    batches = recalibration_batches(splits.train, 1, 16)
    recalibrated = SupernetScorer(supernet, splits.heldout, "cpu", recalib_batches=batches)
    assert recalibrated.stage_cache is None
    with pytest.raises(BenchError, match="recalibration"):
        SupernetScorer(supernet, splits.heldout, "cpu", recalib_batches=batches, fast=True)


def test_stage_cache_is_a_bounded_lru() -> None:
    cache = StageCache(max_bytes=3 * 400)  # room for three 100-float tensors
    for i in range(3):
        cache.put((i,), torch.full((100,), float(i)))
    cache.touch((0,))  # now the most recent: (1,) is the oldest
    cache.put((3,), torch.zeros(100))
    assert cache.get((1,)) is None and cache.get((0,)) is not None
    assert cache.nbytes == 1200
    cache.put((4,), torch.zeros(301))  # larger than the whole cache: not kept
    assert cache.get((4,)) is None and cache.nbytes == 1200
    assert (cache.hits, cache.misses) == (1, 2)


def test_folded_batchnorm_computes_the_same_network(supernet) -> None:
    folded = fold_batchnorm(supernet)
    in_sams = {id(m) for s in folded.sam_modules() for m in s.modules()}
    left = [m for m in folded.modules() if isinstance(m, _BatchNorm) and id(m) not in in_sams]
    assert left == []  # every backbone BN folded into its convolution
    x = torch.randn(8, 3, 16, 16)
    for mask in MASKS:
        supernet.set_mask(mask)
        folded.set_mask(mask)
        with torch.no_grad():
            ref, got = supernet(x), folded(x)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert any(isinstance(m, _BatchNorm) for m in supernet.modules())  # the original is kept


def test_fast_scores_agree_with_the_plain_network(splits, supernet) -> None:
    plain = SupernetScorer(supernet, splits.heldout, "cpu", batch_size=16, cache_mb=0)
    fast = SupernetScorer(supernet, splits.heldout, "cpu", batch_size=16, fast=True)
    for got, ref in zip(_stream_scores(fast), _stream_scores(plain)):
        assert got.top1 == ref.top1 and got.n == ref.n
        assert got.loss == pytest.approx(ref.loss, rel=1e-5)
