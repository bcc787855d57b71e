"""The domain interface: the only part of data_agents (with `env`, `checkers`, `llm`) that
eigen_jax may import. A `Domain` owns tools, a database factory, a policy and tasks;
`Domain.make_env(task)` returns an `data_agents.env.Environment`.
"""

from __future__ import annotations

import abc
from typing import Any

from data_agents.domains.task import Task
from data_agents.env import Environment


class Domain(abc.ABC):
    """A customer-service world: tools + DB + policy + tasks."""

    name: str
    policy: str
    user_policy: str = ""  # guidelines for the user simulator (dual control), if any

    @abc.abstractmethod
    def make_env(self, task: Task | None = None) -> Environment:
        """A fresh environment with the task's initial state applied."""

    @abc.abstractmethod
    def tasks(self, split: str = "test") -> list[Task]:
        """Tasks of a split (`train`, `test`, or whatever the domain offers)."""

    def splits(self) -> list[str]:
        return ["train", "test"]

    @property
    def has_user_tools(self) -> bool:
        return bool(self.make_env().tools_schema("user"))

    # Optional: a scripted solver, so the domain runs offline (reference data, scripted user).
    def reference_user(self, task: Task, max_turns: int | None = None) -> Any:
        """A scripted user for `task`: `first_message() -> str`, `respond(messages) -> str`
        (ending the dialogue with `###STOP###`). Lets GRPO and evaluation run with
        `user="reference"` without an LLM user simulator."""
        raise NotImplementedError(f"domain {self.name!r} has no reference user")

    def reference_dialogue(self, task: Task) -> dict[str, Any]:
        """One solved dialogue of `task`: {"messages", "tools" (the agent's schemas),
        "final_env", "termination"} — what `reference_backend` journals (the offline data
        stage, `reference_data_stage`)."""
        raise NotImplementedError(
            f"domain {self.name!r} has no reference solver; use an LLM backend"
        )
