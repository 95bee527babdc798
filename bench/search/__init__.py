"""Ticket search: supernet training, candidate evaluation, strategies, outputs.

`run_search(SearchConfig(...))` is the entry point (`bench search`); `bench.cli.commands.search`
holds its flags.
"""

from bench.util.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "budget": ("Budget",),
        "config": (
            "SearchConfig",
            "SearchSetup",
        ),
        "evaluator": (
            "Evaluation",
            "Evaluator",
            "Score",
            "SupernetScorer",
            "TableScorer",
        ),
        "hparams": (
            "SEARCH_PRESETS",
            "SearchHParams",
            "SearchPreset",
            "SupernetHParams",
            "resolve_preset",
        ),
        "loop": (
            "LoopResult",
            "search_loop",
        ),
        "reward": (
            "Reward",
            "measure_slot_latency",
        ),
        "run": (
            "config_hash",
            "run_search",
        ),
        "strategies": (
            "STRATEGIES",
            "SearchContext",
            "Strategy",
        ),
        "supernet": (
            "MaskSampler",
            "sample_mask",
            "train_supernet",
        ),
    },
)
