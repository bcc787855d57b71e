"""The domain interface: the only part of data_agents (with `env`, `checkers`, `llm`) that
eigen_jax may import. A `Domain` owns tools, a database factory, a policy and tasks;
`Domain.make_env(task)` returns an `data_agents.env.Environment`.
"""
from __future__ import annotations

import abc

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
