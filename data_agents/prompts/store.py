"""Versioned prompt sets: the built-in `v0` plus every version the reflection agent writes.

Why versions: self-evolution rewrites prompts every round and rolls a round back when its
acceptance rate drops, so each round's records must name the exact prompts that produced them and
any earlier version must stay loadable. A version is a directory `<root>/<name>/` of `<agent>.md`
templates plus `guidance.json` (the reflection's per-agent advice, substituted into `$guidance`)
and `meta.json` (parent, round, why). Versions are content-addressed on commit: committing the
same content on the same parent twice (a resumed run) returns the existing version.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import string
from pathlib import Path
from typing import Any

AGENTS = (
    "planner",
    "task_synth",
    "task_verify",
    "user_sim",
    "assistant",
    "trajectory_verify",
    "reflection",
)
BASE_VERSION = "v0"


def builtin_templates() -> dict[str, str]:
    """The shipped v0 templates, one per agent."""
    root = importlib.resources.files("data_agents.prompts").joinpath(BASE_VERSION)
    return {a: root.joinpath(f"{a}.md").read_text(encoding="utf-8") for a in AGENTS}


def seed_plans() -> list[dict[str, Any]]:
    """Human-written fallback plans, used when the meta-planner's output is unusable."""
    root = importlib.resources.files("data_agents.prompts").joinpath(BASE_VERSION)
    return json.loads(root.joinpath("seed_plans.json").read_text(encoding="utf-8"))["plans"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PromptSet:
    """One version: templates + guidance. `render(agent, **values)` fills a template."""

    def __init__(
        self,
        name: str,
        templates: dict[str, str],
        guidance: dict[str, str],
        meta: dict[str, Any] | None = None,
    ):
        missing = [a for a in AGENTS if a not in templates]
        if missing:
            raise ValueError(f"prompt version {name!r} lacks templates for {missing}")
        self.name, self.templates, self.guidance = name, dict(templates), dict(guidance)
        self.meta = dict(meta or {})

    def render(self, agent: str, **values: Any) -> str:
        """Substitute `$name` placeholders; `$guidance` defaults to this version's advice.

        `safe_substitute` leaves unknown `$words` alone, so a template that mentions `$5` or a
        reflection that writes `$x` cannot crash a round.
        """
        if agent not in self.templates:
            raise KeyError(
                f"no prompt template for agent {agent!r}; known: {sorted(self.templates)}"
            )
        advice = self.guidance.get(agent, "").strip()
        values.setdefault("guidance", f"Additional guidance:\n{advice}" if advice else "")
        text = string.Template(self.templates[agent]).safe_substitute(
            {k: str(v) for k, v in values.items()}
        )
        return text.strip() + "\n"


class PromptStore:
    """Prompt versions under `root` (the run's output dir), starting from the shipped v0."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / BASE_VERSION / "meta.json").exists():
            self._write(
                BASE_VERSION,
                builtin_templates(),
                {},
                {"parent": None, "round": None, "reason": "built-in"},
            )

    def versions(self) -> list[str]:
        names = [
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and (p / "meta.json").exists() and p.name[1:].isdigit()
        ]
        return sorted(names, key=lambda n: int(n[1:]))

    def get(self, name: str) -> PromptSet:
        d = self.root / name
        if not (d / "meta.json").exists():
            raise KeyError(f"unknown prompt version {name!r}; stored: {self.versions()}")
        templates = {a: (d / f"{a}.md").read_text(encoding="utf-8") for a in AGENTS}
        guidance = json.loads((d / "guidance.json").read_text(encoding="utf-8"))
        meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
        return PromptSet(name, templates, guidance, meta)

    def commit(
        self,
        parent: str,
        guidance: dict[str, str],
        *,
        round_index: int,
        reason: str,
        templates: dict[str, str] | None = None,
    ) -> PromptSet:
        """Store a new version derived from `parent`; identical content returns the existing one."""
        base = self.get(parent)
        templates = {**base.templates, **(templates or {})}
        guidance = {k: str(v) for k, v in guidance.items() if k in AGENTS}
        for name in self.versions():
            other = self.get(name)
            if (
                other.meta.get("parent") == parent
                and other.templates == templates
                and other.guidance == guidance
            ):
                return other
        name = f"v{int(self.versions()[-1][1:]) + 1}"
        self._write(
            name, templates, guidance, {"parent": parent, "round": round_index, "reason": reason}
        )
        return self.get(name)

    def _write(
        self, name: str, templates: dict[str, str], guidance: dict[str, str], meta: dict[str, Any]
    ) -> None:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        for agent, text in templates.items():
            _atomic_write(d / f"{agent}.md", text)
        _atomic_write(d / "guidance.json", json.dumps(guidance, indent=1, sort_keys=True))
        _atomic_write(
            d / "meta.json", json.dumps(meta, indent=1, sort_keys=True)
        )  # last: marks done
