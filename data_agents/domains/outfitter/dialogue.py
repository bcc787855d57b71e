"""Runs the outfitter REFERENCE SOLVER: `ReferenceAgent` ⟷ environment ⟷ `ReferenceUser`.

Why: the offline quickstart needs a few hundred correct dialogues without any LLM, and tests need
an end-to-end check that the domain is solvable. The loop is the one dialogue protocol
(`data_agents.dialogue`); the record uses the project's message contract:
{"role", "content", "tool_calls": [{"id", "name", "arguments"}], "tool_call_id"}.
"""

from __future__ import annotations

import asyncio
from typing import Any

from data_agents import dialogue as protocol
from data_agents.domains.base import Domain
from data_agents.domains.outfitter.reference_agent import ReferenceAgent
from data_agents.domains.outfitter.reference_user import ReferenceUser
from data_agents.domains.task import Task


def run_reference_dialogue(
    domain: Domain, task: Task, max_turns: int = 40, agent: Any = None, user: Any = None
) -> dict[str, Any]:
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
    system = {"role": "system", "content": domain.policy}
    state = protocol.Dialogue(env, protocol.Limits(max_steps=10**9, max_errors=10**9))
    turns = 0

    async def agent_speaks(view: list[dict[str, Any]]) -> protocol.Turn:
        nonlocal turns
        if turns >= max_turns:
            raise protocol.EpisodeEnd("max_turns")
        turns += 1
        reply = agent.act(view, schema)
        calls = [
            protocol.Call(c["id"], c["name"], c.get("arguments", {}))
            for c in reply.get("tool_calls") or []
        ]
        return protocol.Turn(reply.get("content") or "", tuple(calls))

    async def user_speaks(_view: list[dict[str, Any]]) -> protocol.Turn:
        if not state.messages:
            return protocol.Turn(user.first_message())
        return protocol.Turn(user.respond([system] + state.messages))

    asyncio.run(protocol.play(state, agent_speaks, user_speaks, domain.policy, ""))
    termination = "user_stop" if state.finish == "user_stop" else "max_turns"
    return {
        "task_id": task.id,
        "messages": [system] + state.messages,
        "final_env": env,
        "tools": schema,
        "termination": termination,
    }
