"""Registries that are easy to extend and kind when a name is misspelled.

Lives at the top of the package so every layer (attacks, findings, report, triage) may use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean: {close[0]}?" if close else ""
            raise KeyError(
                f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def values(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    def __contains__(self, name: str) -> bool:
        return name in self._items
