"""Runs the outfitter REFERENCE SOLVER: `ReferenceAgent` ⟷ environment ⟷ `ReferenceUser`.

Why: the offline quickstart needs a few hundred correct dialogues without any LLM, and tests need
an end-to-end check that the domain is solvable. The record uses the project's message contract:
{"role", "content", "tool_calls": [{"id", "name", "arguments"}], "tool_call_id"}.
"""
from __future__ import annotations

from typing import Any

from data_agents.domains.base import Domain
from data_agents.domains.outfitter import texts
from data_agents.domains.outfitter.reference_agent import ReferenceAgent
from data_agents.domains.outfitter.reference_user import ReferenceUser
from data_agents.domains.task import Task


def run_reference_dialogue(domain: Domain, task: Task, max_turns: int = 40,
                           agent: Any = None, user: Any = None) -> dict[str, Any]:
    """Play one task; `max_turns` bounds assistant steps (tool calls and replies).

    `agent` / `user` default to the reference pair; any object with the same `act` / `respond`
    methods can stand in (e.g. a model-backed agent facing the reference user).
    """
    if max_turns < 1:
        raise ValueError(f"max_turns must be >= 1, got {max_turns}")
    env = domain.make_env(task)
    agent = agent if agent is not None else ReferenceAgent(domain)
    user = user if user is not None else ReferenceUser(task)
    schema = env.tools_schema("assistant")
    messages: list[dict[str, Any]] = [{"role": "system", "content": domain.policy},
                                      {"role": "user", "content": user.first_message()}]
    termination = "max_turns"
    for _ in range(max_turns):
        reply = agent.act(messages, schema)
        calls = reply.get("tool_calls") or []
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content") or ""}
        if calls:
            message["tool_calls"] = calls
        messages.append(message)
        for call in calls:
            result = env.call(call["name"], call.get("arguments", {}), "assistant")
            messages.append({"role": "tool", "content": result.content,
                             "tool_call_id": call["id"]})
        if calls:
            continue
        answer = user.respond(messages)
        messages.append({"role": "user", "content": answer})
        if texts.STOP in answer:
            termination = "user_stop"
            break
    return {"task_id": task.id, "messages": messages, "final_env": env,
            "tools": schema, "termination": termination}
