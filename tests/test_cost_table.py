"""One timing session for a ticket and its controls: interleaved, tolerance-driven, stored."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.cost.table import (
    Arch,
    _inversion_flag,
    measure_session,
    median_ci_rel,
    ratio_ci,
    session_costs,
)
from bench.models.slots import build_ticket_model
from bench.ticket.schema import baseline_mask, make_ticket
from bench.util.io import read_json

SHAPE = (1, 3, 32, 32)
MASK_4_OF_9 = (1, 0, 1, 0, 1, 0, 1, 0, 0)


class Busy(nn.Module):
    """Spins for `ms` (a list cycles per call): a known, nearly noise-free cost."""

    def __init__(self, *ms: float) -> None:
        super().__init__()
        self.ms, self.calls = ms, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wait = self.ms[self.calls % len(self.ms)] / 1e3
        self.calls += 1
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < wait:
            pass
        return x


def _busy_arch(key: str, kept: int, *ms: float, builds: Counter | None = None) -> Arch:
    def build() -> nn.Module:
        if builds is not None:
            builds[key] += 1
        return Busy(*ms)

    return Arch(key=key, name=f"net-{key}", kept=kept, build=build)


def _ticket_archs(builds: Counter) -> list[Arch]:
    prov = {"kind": "baseline", "baseline": "random", "seed": 0}
    archs = []
    for name, mask in (
        ("none", baseline_mask("none", 9)),
        ("ticket", MASK_4_OF_9),
        ("full", baseline_mask("full", 9)),
    ):
        t = make_ticket(f"r20-se-{name}", "resnet20", "se", mask, prov)

        def build(t=t, name=name) -> nn.Module:
            builds[name] += 1
            return build_ticket_model(t)

        archs.append(Arch(key=f"test:{t.checksum}", name=name, kept=t.kept, build=build))
    return archs


def _files(root: Path) -> list[Path]:
    return sorted((root / "costs").glob("*.json"))


def test_median_ci_from_order_statistics():
    assert median_ci_rel([1.0, 2.0, 3.0, 4.0, 5.0])[1] == math.inf  # n < 6: no 95% interval
    assert median_ci_rel([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]) == (4.0, (7 - 1) / (2 * 4))
    # n = 9: the interval is [x_(2), x_(8)], so one outlier on each side does not widen it
    assert median_ci_rel([0.1, 9, 9, 10, 10, 10, 11, 11, 99]) == (10, (11 - 9) / (2 * 10))


def test_one_session_is_stored_once_and_reused_for_a_subset(tmp_path):
    builds: Counter = Counter()
    archs = _ticket_archs(builds)
    first = session_costs(tmp_path, "test/cls", archs, SHAPE, time_cap_s=1.0, progress=False)
    assert len(_files(tmp_path)) == 1 and builds == Counter(none=1, ticket=1, full=1)
    none, ticket, full = (first[a.key] for a in archs)
    assert none["params_sams"] == 0 < ticket["params_sams"] < full["params_sams"]
    assert none["params_backbone"] == ticket["params_backbone"] == full["params_backbone"]
    assert ticket["rounds"] >= 7 and ticket["input_shape"] == list(SHAPE)
    assert ticket["threads"] == torch.get_num_threads() and ticket["torch"] == torch.__version__

    # The full control's record later asks for itself and the plain backbone only.
    subset = [archs[2], archs[0]]
    again = session_costs(tmp_path, "test/cls", subset, SHAPE, time_cap_s=1.0, progress=False)
    assert builds == Counter(none=1, ticket=1, full=1) and len(_files(tmp_path)) == 1
    assert again == {a.key: first[a.key] for a in subset}
    same = session_costs(tmp_path, "test/cls", archs, SHAPE, progress=False)
    assert same == first and builds == Counter(none=1, ticket=1, full=1)

    stored = read_json(_files(tmp_path)[0])
    assert stored["session"] == ticket["session"] and stored["kind"] == "test/cls"
    assert stored["measurement"]["time_cap_s"] == 1.0 and "device" in stored["machine"]


def test_ratios_are_within_one_session(tmp_path):
    archs = [_busy_arch("a", 0, 0.5), _busy_arch("b", 1, 1.0), _busy_arch("c", 2, 2.0)]
    costs = session_costs(tmp_path, "test/busy", archs, (1, 4), time_cap_s=5.0, progress=False)
    for a in archs:
        ratios = costs[a.key]["latency_ratio"]
        assert set(ratios) == {o.key for o in archs} - {a.key}
        for b, r in ratios.items():
            assert r == costs[a.key]["latency_ms"] / costs[b]["latency_ms"]
    assert 1.5 < costs["c"]["latency_ratio"]["a"] < 6  # 2 ms vs 0.5 ms of spinning
    # The ratio's interval comes from the paired rounds and holds the slower/faster split.
    lo, hi = costs["c"]["latency_ratio_ci"]["a"]
    assert 1 < lo <= hi and costs["a"]["latency_ratio_ci"]["c"][1] < 1


def test_ratio_interval_from_paired_rounds():
    # n = 7: [x_(1), x_(7)] of the per-round ratios; n = 9: [x_(2), x_(8)]
    assert ratio_ci([2.0] * 7, [1.0, 2.0, 4.0, 1.0, 2.0, 4.0, 8.0]) == (0.25, 2.0)
    nine = ratio_ci([1.0] * 9, [1.0, 2.0, 4.0, 5.0, 8.0, 10.0, 0.5, 0.25, 20.0])
    assert nine == (1 / 10, 1 / 0.5)
    # A drift that slows both models of a round alike cancels in its ratio.
    assert ratio_ci([1, 2, 3, 4, 5, 6, 7], [2, 4, 6, 8, 10, 12, 14]) == (0.5, 0.5)
    assert ratio_ci([1.0] * 5, [2.0] * 5) is None  # too few rounds for a 95% interval


def test_other_shape_threads_or_kind_is_a_new_session(tmp_path):
    builds: Counter = Counter()
    archs = [_busy_arch("a", 0, 0.1, builds=builds), _busy_arch("b", 1, 0.1, builds=builds)]

    def run(kind: str = "test/busy", shape: tuple[int, ...] = (1, 4)) -> None:
        session_costs(tmp_path, kind, archs, shape, time_cap_s=0.2, progress=False)

    run()
    run(shape=(1, 8))
    run("test/other")
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        run()
    finally:
        torch.set_num_threads(threads)
    run()  # back to the first setting: reused
    assert len(_files(tmp_path)) == 4 and builds == Counter(a=4, b=4)


def test_slower_arch_with_fewer_sams_is_flagged(tmp_path):
    inverted = [_busy_arch("few", 4, 3.0), _busy_arch("many", 9, 0.5)]
    costs = session_costs(tmp_path, "test/inv", inverted, (1, 4), time_cap_s=2.0, progress=False)
    flag = costs["few"]["latency_flag"]
    assert flag and "net-many" in flag and "beyond the 2% tolerance" in flag
    assert costs["many"]["latency_flag"] is None

    honest = [_busy_arch("few", 4, 0.5), _busy_arch("many", 9, 3.0)]
    costs = session_costs(tmp_path, "test/ok", honest, (1, 4), time_cap_s=2.0, progress=False)
    assert costs["few"]["latency_flag"] is None and costs["many"]["latency_flag"] is None


def test_inversion_within_tolerance_says_so():
    few, many = _busy_arch("few", 4, 0), _busy_arch("many", 9, 0)
    flag = _inversion_flag(few, [few, many], {"few": 1.01, "many": 1.0}, 0.02)
    assert flag and "net-many" in flag and "within the 2% tolerance" in flag
    assert _inversion_flag(many, [few, many], {"few": 1.01, "many": 1.0}, 0.02) is None


def test_noisy_network_stops_at_the_time_cap_unconverged(tmp_path):
    # Alternating 1 ms / 4 ms: the median sits on the jump, its interval never narrows.
    archs = [_busy_arch("noisy", 0, 1.0, 4.0), _busy_arch("steady", 1, 1.0)]
    costs = session_costs(tmp_path, "test/cap", archs, (1, 4), time_cap_s=0.2, progress=False)
    noisy = costs["noisy"]
    assert noisy["converged"] is False and noisy["latency_ci_rel"] > 0.02
    stored = read_json(_files(tmp_path)[0])
    assert stored["converged"] is False and 0.2 <= stored["seconds"] < 2.0


def test_steady_network_converges_before_the_cap():
    models = {"a": Busy(1.0), "b": Busy(2.0)}
    t = measure_session(models, torch.zeros(1), tolerance=0.05, time_cap_s=30.0, progress=False)
    assert t.all_converged and t.rounds >= 7 and t.seconds < 30.0
    assert all(r <= 0.05 for r in t.ci_rel.values())


def test_zero_cap_times_exactly_min_rounds(capsys):
    models = {"a": Busy(0.1), "b": Busy(0.1)}
    t = measure_session(models, torch.zeros(1), min_rounds=4, warmup=2, time_cap_s=0, progress=True)
    assert t.rounds == 4 and models["a"].calls == 6  # 2 warm-up + 4 timed passes
    assert "round" in capsys.readouterr().err  # the bar went to stderr


def test_duplicate_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        session_costs(tmp_path, "k", [_busy_arch("a", 0, 0), _busy_arch("a", 1, 0)], (1, 4))


def test_too_few_rounds_for_an_interval_still_store(tmp_path):
    archs = [_busy_arch("a", 0, 0.1), _busy_arch("b", 1, 0.1)]
    kw = {"min_rounds": 3, "time_cap_s": 0, "progress": False}
    costs = session_costs(tmp_path, "test/few", archs, (1, 4), **kw)
    assert costs["a"]["rounds"] == 3 and costs["a"]["latency_ci_rel"] is None
    assert costs["a"]["converged"] is False and len(_files(tmp_path)) == 1
