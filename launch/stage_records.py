"""What each pipeline stage ran with, so a resumed run never reuses a stage's outputs under
settings they were not made with.

After a stage finishes, `WORKDIR/stages/NN_LABEL.json` records the gin bindings that reach it: the
bound parameters of every configurable the stage called (gin's operative config of just that
stage tells which), in the scopes it called them in. Before a stage runs again, the same bindings
are read from the current config; any difference stops the run with one line naming the stage
and the changed bindings, or, when asked (`rerun_changed=True`), moves that stage's outputs and
every later stage's aside (`LABEL.stale-N`, nothing deleted) and runs them anew.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import gin
import gin.config as gin_config

from eigen_jax import multihost, paths


class StageConfigChanged(ValueError):
    """A finished stage's settings differ from the current config."""


@contextlib.contextmanager
def used_configurables() -> Iterator[set[tuple[str, str]]]:
    """The (scope, selector) of every gin configurable called inside the block. gin keeps one
    operative config per process; it is set aside for the block and merged back after."""
    used: set[tuple[str, str]] = set()
    with gin_config._OPERATIVE_CONFIG_LOCK:
        before = {k: dict(v) for k, v in gin_config._OPERATIVE_CONFIG.items()}
        gin_config._OPERATIVE_CONFIG.clear()
    try:
        yield used
    finally:
        with gin_config._OPERATIVE_CONFIG_LOCK:
            used.update(gin_config._OPERATIVE_CONFIG)
            for key, params in before.items():
                gin_config._OPERATIVE_CONFIG.setdefault(key, {}).update(params)


def bound_values(used: set[tuple[str, str]] | list) -> dict[str, str]:
    """`scope/selector.param -> repr(value)` of the current bindings that reach the configurables
    in `used`: unscoped ones, and those in any scope made of the scopes they were called in."""
    selectors = {selector for _, selector in used}
    scope_parts = set()
    for scope, _ in used:
        scope_parts.update(p for p in scope.split("/") if p)
    out = {}
    for (scope, selector), params in gin_config._CONFIG.items():
        if selector not in selectors or not set(filter(None, scope.split("/"))) <= scope_parts:
            continue
        for name, value in params.items():
            out[f"{scope + '/' if scope else ''}{selector}.{name}"] = repr(value)
    return out


def changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """`binding: old -> new` for each binding added, removed or changed."""
    return [
        f"{k}: {old.get(k, '<unset>')} -> {new.get(k, '<unset>')}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


class StageRecords:
    """The `stages/` folder of a run: one record per finished stage, by position."""

    def __init__(self, workdir):
        self.dir = paths.resolve(workdir) / "stages"

    def _find(self, index: int):
        if not self.dir.exists():
            return None
        hits = sorted(self.dir.glob(f"{index:02d}_*.json"))
        return hits[-1] if hits else None

    def check(self, index: int, rerun_changed: bool, later_labels: list[str]) -> None:
        """Before stage `index` runs: stop (or, with `rerun_changed`, move its outputs and those
        of the stages after it aside) when its recorded bindings differ from the current ones."""
        path = self._find(index)
        if path is None:
            return
        record = json.loads(path.read_text())
        used = {tuple(x) for x in record["used"]}
        diff = changes(record["bindings"], bound_values(used))
        if not diff:
            return
        if not rerun_changed:
            raise StageConfigChanged(
                f"stage {record['label']} finished with other settings ({'; '.join(diff)}); "
                "restore them, use a new --workdir, or pass --rerun_changed_stages"
            )
        multihost.primary_first(
            f"stale_{index}", lambda: self._set_aside(index, [record["label"]] + later_labels)
        )

    def _set_aside(self, index: int, labels: list[str]) -> None:
        workdir = self.dir.parent
        for label in labels:
            src = workdir / label
            if src.exists():
                n = 0
                while (workdir / f"{label}.stale-{n}").exists():
                    n += 1
                src.rename(workdir / f"{label}.stale-{n}")
        for f in list(self.dir.glob("*.json")):
            if int(f.name[:2]) >= index:
                f.unlink()

    def labels_after(self, index: int) -> list[str]:
        """Labels of the recorded stages after `index` (what a rerun of `index` invalidates)."""
        if not self.dir.exists():
            return []
        return [
            json.loads(f.read_text())["label"]
            for f in sorted(self.dir.glob("*.json"))
            if int(f.name[:2]) > index
        ]

    def write(
        self,
        index: int,
        label: str,
        used: set[tuple[str, str]],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """The record of a finished stage (process 0)."""
        if not multihost.is_primary():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {
            "label": label,
            "used": sorted(used),
            "bindings": bound_values(used),
            **(extra or {}),
        }
        (self.dir / f"{index:02d}_{label}.json").write_text(json.dumps(record, indent=1))


def config_text() -> str:
    """Every gin binding of the run, as gin writes a config file."""
    return gin.config_str()
