"""Ticket search: supernet training, candidate evaluation, strategies, outputs.

`run_search(SearchConfig(...))` is the entry point (`bench search`); `bench.search.cli`
holds its flags.
"""

from bench.search.budget import Budget
from bench.search.config import SearchConfig, SearchSetup
from bench.search.evaluator import Evaluation, Evaluator, Score, SupernetScorer, TableScorer
from bench.search.hparams import (
    SEARCH_PRESETS,
    SearchHParams,
    SearchPreset,
    SupernetHParams,
    resolve_preset,
)
from bench.search.loop import LoopResult, search_loop
from bench.search.reward import Reward, measure_slot_latency
from bench.search.run import config_hash, run_search
from bench.search.strategies import STRATEGIES, SearchContext, Strategy
from bench.search.supernet import MaskSampler, sample_mask, train_supernet

__all__ = [
    "SEARCH_PRESETS",
    "STRATEGIES",
    "Budget",
    "Evaluation",
    "Evaluator",
    "LoopResult",
    "MaskSampler",
    "Reward",
    "Score",
    "SearchConfig",
    "SearchContext",
    "SearchHParams",
    "SearchPreset",
    "SearchSetup",
    "Strategy",
    "SupernetHParams",
    "SupernetScorer",
    "TableScorer",
    "config_hash",
    "measure_slot_latency",
    "resolve_preset",
    "run_search",
    "sample_mask",
    "search_loop",
    "train_supernet",
]
