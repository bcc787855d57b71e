"""Outfitter: the built-in offline domain — an outdoor-gear rental desk (our own design).

Why a built-in domain: the offline quickstart and the test suite need a complete world (tools,
database, policy, tasks, a reference dialogue solver) that runs without tau2 or any LLM, and that
a tiny transformer can learn on CPU in minutes. `make_domain(seed=0, n_train=400, n_test=100)`
returns the `Domain`; the registry loads it as `data_agents.domains.load("outfitter")`.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence

from data_agents.domains.base import Domain
from data_agents.domains.outfitter.db import OutfitterDB, make_base_db
from data_agents.domains.outfitter.tasks import DIFFICULTY_WEIGHTS, generate_task
from data_agents.domains.outfitter.tools import AGENT_TOOLS, ASSERTIONS
from data_agents.domains.task import Task
from data_agents.domains.toolkit import ToolkitEnvironment, make_tool

POLICY = importlib.resources.files(__name__).joinpath("policy.md").read_text()
_ASSERTION_TOOLS = [make_tool(f) for f in ASSERTIONS]


class OutfitterDomain(Domain):
    """Tools + seeded base DB + policy + deterministic, disjoint train/test task splits."""

    name = "outfitter"
    policy = POLICY

    def __init__(
        self,
        seed: int = 0,
        n_train: int = 400,
        n_test: int = 100,
        difficulties: Sequence[str] | None = None,
    ) -> None:
        """`difficulties` keeps only tasks of those tiers (easy/medium/hard/expert) — e.g. a CPU
        miniature whose tiny model cannot learn the longest multi-request dialogues."""
        for label, n in (("n_train", n_train), ("n_test", n_test)):
            if not isinstance(n, int) or n < 0:
                raise ValueError(f"{label} must be a non-negative int, got {n!r}")
        if difficulties is not None:
            unknown = set(difficulties) - set(DIFFICULTY_WEIGHTS)
            if unknown or not difficulties:
                raise ValueError(
                    f"difficulties {sorted(difficulties)} must be a non-empty subset "
                    f"of {sorted(DIFFICULTY_WEIGHTS)}"
                )
        self.difficulties = set(difficulties) if difficulties is not None else None
        self.seed, self.n_train, self.n_test = seed, n_train, n_test
        self.base_db: OutfitterDB = make_base_db(seed)
        self._cache: dict[str, tuple[Task, ...]] = {}

    def make_env(self, task: Task | None = None) -> ToolkitEnvironment:
        env = ToolkitEnvironment(self.base_db, AGENT_TOOLS, assertions=_ASSERTION_TOOLS)
        if task is not None:
            env.apply_initial_state(task.initial_state)
        return env

    def tasks(self, split: str = "test") -> list[Task]:
        return [t.model_copy(deep=True) for t in self._split(split)]

    def reference_user(self, task: Task, max_turns: int | None = None):
        from data_agents.domains.outfitter.reference_user import ReferenceUser

        return ReferenceUser(task, max_turns)

    def reference_dialogue(self, task: Task) -> dict:
        from data_agents.domains.outfitter.dialogue import run_reference_dialogue

        return run_reference_dialogue(self, task)

    def _split(self, split: str) -> tuple[Task, ...]:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; outfitter has 'train' and 'test'")
        if split not in self._cache:
            self._cache[split] = self._generate(split)
        return self._cache[split]

    def _wanted(self, task: Task) -> bool:
        return self.difficulties is None or _difficulty(task) in self.difficulties

    def _generate(self, split: str) -> tuple[Task, ...]:
        """Test first; train skips any task whose content repeats a test task (disjointness)."""
        if split == "test":
            out, index = [], 0
            while len(out) < self.n_test:
                task = generate_task(self.base_db, "test", index, self.seed)
                index += 1
                if self._wanted(task):
                    out.append(task)
            return tuple(out)
        seen = {_signature(t) for t in self._split("test")}
        out, index = [], 0
        while len(out) < self.n_train:
            task = generate_task(self.base_db, "train", index, self.seed)
            index += 1
            if self._wanted(task) and _signature(task) not in seen:
                seen.add(_signature(task))
                out.append(task.model_copy(update={"id": f"outfitter_train_{len(out):04d}"}))
        return tuple(out)


def _difficulty(task: Task) -> str:
    return (task.description or {}).get("difficulty", "")


def _signature(task: Task) -> str:
    """What makes two tasks the same: the user's requests and the gold actions."""
    script = (task.description or {}).get("user_script", {})
    actions = [a.model_dump(mode="json") for a in task.evaluation_criteria.actions or []]
    return repr(([r["text"] for r in script.get("requests", [])], actions))


def make_domain(**kwargs) -> OutfitterDomain:
    """Registry entry point: `data_agents.domains.load("outfitter", seed=..., n_train=...)`."""
    return OutfitterDomain(**kwargs)


__all__ = ["POLICY", "OutfitterDomain", "make_domain"]
