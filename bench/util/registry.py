"""A small named registry with glob listing, one per extensible family."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from bench.util.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; `register` is a decorator, `get` fails with a clear error."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"{self.family}: cannot register an object without a name")
            if key in self._entries:
                raise ValueError(f"{self.family} {key!r} is registered twice")
            self._entries[key] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise BenchError(f"unknown {self.family} {name!r} (known: {known})") from None

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style glob, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
