"""The task contract: tau2-bench's task format, so data is interchangeable with tau2.

Models are permissive (`extra="allow"`) so tau2 tasks round-trip through `Task.model_validate`
/ `Task.model_dump(mode="json", exclude_none=True)` without losing fields we do not interpret.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

Requestor = Literal["assistant", "user"]
RewardType = Literal["DB", "ENV_ASSERTION", "NL_ASSERTION", "ACTION", "COMMUNICATE", "CODE"]


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")


class StructuredUserInstructions(_Model):
    domain: str
    reason_for_call: str
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str


class UserScenario(_Model):
    persona: str | None = None
    instructions: StructuredUserInstructions | str


class Action(_Model):
    """A gold tool call. `requestor` says who makes it (dual control: telecom users call tools)."""

    action_id: str
    requestor: Requestor = "assistant"
    name: str
    arguments: dict[str, Any] = {}
    info: str | None = None
    compare_args: list[str] | None = None


class EnvFunctionCall(_Model):
    env_type: Requestor
    func_name: str
    arguments: dict[str, Any] = {}


class EnvAssertion(EnvFunctionCall):
    assert_value: bool = True
    message: str | None = None


class InitializationData(_Model):
    agent_data: dict[str, Any] | None = None
    user_data: dict[str, Any] | None = None


class InitialState(_Model):
    initialization_data: InitializationData | None = None
    initialization_actions: list[EnvFunctionCall] | None = None
    message_history: list[dict[str, Any]] | None = None


class EvaluationCriteria(_Model):
    actions: list[Action] | None = None
    env_assertions: list[EnvAssertion] | None = None
    communicate_info: list[str] | None = None
    nl_assertions: list[str] | None = None
    reward_basis: list[RewardType] = ["DB", "COMMUNICATE"]


class Task(_Model):
    id: str
    description: dict[str, Any] | None = None
    user_scenario: UserScenario
    ticket: str | None = None
    initial_state: InitialState | None = None
    evaluation_criteria: EvaluationCriteria | None = None
    # Optional LLM-written checker: source of `check(initial_db, final_db, transcript) -> bool`.
    checker_source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
