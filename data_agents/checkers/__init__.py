"""Checkers: the reward of a dialogue. `check` combines the declarative criteria (tau2 semantics,
`declarative.py`) with the task's LLM-written code checker run in a sandbox (`sandbox.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from data_agents.checkers.declarative import check_declarative, validate_transcript
from data_agents.checkers.sandbox import SandboxLimits, run_code_checker
from data_agents.checkers.verdict import Verdict
from data_agents.domains.base import Domain
from data_agents.domains.task import Task
from data_agents.env import Environment


def check(
    domain: Domain,
    task: Task,
    final_env: Environment,
    transcript: Sequence[dict[str, Any]],
    limits: SandboxLimits | None = None,
) -> Verdict:
    """The verdict on one dialogue: product of the declarative components and, when the task has
    a code checker (`checker_source`, or "CODE" in its reward basis), the code checker's answer
    on the agent DB before (a fresh `domain.make_env(task)`) and after (`final_env`) the dialogue.
    Any error makes the whole verdict an error."""
    declarative = check_declarative(domain, task, final_env, transcript)
    criteria = task.evaluation_criteria
    wants_code = task.checker_source is not None or (
        criteria is not None and "CODE" in criteria.reward_basis
    )
    if not wants_code:
        return declarative
    components = dict(declarative.components)
    if not task.checker_source:
        return Verdict(
            "error", components, "reward basis has CODE but the task has no checker_source"
        )
    code = run_code_checker(
        task.checker_source,
        domain.make_env(task).db_state("assistant"),
        final_env.db_state("assistant"),
        validate_transcript(transcript),
        limits or SandboxLimits(),
    )
    components.update(code.components)
    reasons = [
        r for r in (declarative.reason if declarative.status != "pass" else None, code.reason) if r
    ]
    statuses = {declarative.status, code.status}
    status = "error" if "error" in statuses else "fail" if "fail" in statuses else "pass"
    return Verdict(status, components, "; ".join(reasons) or None)


__all__ = [
    "SandboxLimits",
    "Verdict",
    "check",
    "check_declarative",
    "run_code_checker",
    "validate_transcript",
]
