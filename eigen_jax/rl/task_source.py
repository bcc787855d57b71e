"""Where GRPO and evaluation draw their tasks: a domain's own split, or the synthesised tasks of
a published `eigen_dialogues` TFDS dataset (the paper's recipe: RL on synthesised tasks).

Why the dataset's tasks and not only its dialogues: each accepted record carries the task the
engine synthesised and verified, with its checker — declarative criteria and, where the engine
wrote one, a code checker (`checker_source`), which `data_agents.checkers.check` runs sandboxed
exactly as for the domain's own tasks. Tasks are deduplicated by id (several dialogues may share
one), in dataset order, and only the domain's records are used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gin

KINDS = ("domain", "synthesised")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TaskSource:
    """kind: `domain` (`domain.tasks(split)`) or `synthesised` (the TFDS dataset `dataset` under
    `data_dir`, split `split`); max_tasks: keep only the first N."""

    kind: str = "domain"
    data_dir: str | None = None
    dataset: str = "eigen_dialogues"
    max_tasks: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"TaskSource.kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "synthesised" and not self.data_dir:
            raise ValueError(
                "TaskSource(kind='synthesised') needs data_dir (a published "
                "eigen_dialogues TFDS data_dir)"
            )
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ValueError(f"TaskSource.max_tasks must be >= 1, got {self.max_tasks}")

    def tasks(self, domain: Any, split: str) -> list[Any]:
        """The tasks of `split` for `domain` (a `data_agents.domains.Domain`)."""
        tasks = (
            domain.tasks(split)
            if self.kind == "domain"
            else synthesised_tasks(self.data_dir, domain.name, split, self.dataset)
        )
        if not tasks:
            raise ValueError(f"no {split!r} tasks for domain {domain.name!r} in {self}")
        return tasks[: self.max_tasks]


def _same_domain(a: str, b: str) -> bool:
    return a.removeprefix("tau2:") == b.removeprefix("tau2:")


def synthesised_tasks(
    data_dir: str, domain_name: str, split: str, dataset: str = "eigen_dialogues"
) -> list[Any]:
    """Unique tasks (with their code checkers) of the dataset's `split` records of the domain."""
    from data_agents.domains.task import Task
    from eigen_jax.data.dialogues import decode_example, dialogue_source

    out, seen = [], set()
    for example in dialogue_source(data_dir, split, dataset):
        d = decode_example(example)
        if not _same_domain(d["domain"], domain_name) or d["task_id"] in seen:
            continue
        seen.add(d["task_id"])
        out.append(Task.model_validate({**d["task"], "checker_source": d["checker_source"]}))
    return out
