"""Search strategies: one file each, registered in STRATEGIES by name."""

from bench.search.strategies import evolution, greedy, random, reinforce  # noqa: F401  (register)
from bench.search.strategies.base import STRATEGIES, SearchContext, Strategy

__all__ = ["STRATEGIES", "SearchContext", "Strategy"]
