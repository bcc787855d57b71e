"""Name → function registries (advantage estimators, policy losses): pure functions by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, kind: str):
        self.kind = kind
        self._fns: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def wrap(fn: F) -> F:
            if name in self._fns:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._fns[name] = fn
            return fn

        return wrap

    def get(self, name: str) -> F:
        if name not in self._fns:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {sorted(self._fns)}")
        return self._fns[name]

    def names(self) -> list[str]:
        return sorted(self._fns)
