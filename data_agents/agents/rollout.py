"""Dialogue rollout: an LLM user simulator and an LLM assistant with the domain's tools, against
the executable environment, for a bounded number of steps.

Each side sees its own view of one shared transcript: the assistant sees its system prompt
(policy), the user's words, its own tool calls and their results; the simulator sees its
scenario, the assistant's words as the "user" turn, and (dual control) its own tool calls. The
simulator ends the dialogue with ###STOP###, ###TRANSFER### or ###OUT-OF-SCOPE###, tau2's tokens.
The returned messages follow the record contract and start with the assistant's system prompt,
so an accepted dialogue is directly an SFT example.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from data_agents.agents.base import ChatLLM, Sampling, chat
from data_agents.agents.parsing import StageFailure, first_message, parse_tool_calls
from data_agents.domains.base import Domain
from data_agents.domains.task import StructuredUserInstructions, Task
from data_agents.env import Environment
from data_agents.prompts import PromptSet

STAGE = "rollout"
GREETING = "Hi! How can I help you today?"
STOP_TOKENS = {"###STOP###": "user_stop", "###TRANSFER###": "transfer",
               "###OUT-OF-SCOPE###": "out_of_scope"}


@dataclasses.dataclass
class Rollout:
    messages: list[dict[str, Any]]
    env: Environment
    termination: str  # user_stop | transfer | out_of_scope | max_steps
    steps: int
    tools: list[dict[str, Any]]
    user_tools: list[dict[str, Any]]


def user_prompt(prompts: PromptSet, task: Task) -> str:
    ins = task.user_scenario.instructions
    if isinstance(ins, StructuredUserInstructions):
        fields = {"reason_for_call": ins.reason_for_call, "known_info": ins.known_info or "",
                      "unknown_info": ins.unknown_info or "", "task_instructions": ins.task_instructions}
    else:
        fields = {"reason_for_call": "", "known_info": "", "unknown_info": "", "task_instructions": ins}
    return prompts.render("user_sim", persona=task.user_scenario.persona or "", **fields)


def termination_of(text: str) -> str | None:
    for token, name in STOP_TOKENS.items():
        if token in text:
            return name
    return None


def assistant_view(system: str, messages: list[dict], owners: list[str]) -> list[dict]:
    view = [{"role": "system", "content": system}]
    for m, owner in zip(messages, owners):
        if m["role"] == "user":
            if m["content"]:
                view.append({"role": "user", "content": m["content"]})
        elif m["role"] == "assistant" or (m["role"] == "tool" and owner == "assistant"):
            view.append(m)
    return view


def user_view(system: str, messages: list[dict], owners: list[str]) -> list[dict]:
    view = [{"role": "system", "content": system}, {"role": "user", "content": GREETING}]
    for m, owner in zip(messages, owners):
        if m["role"] == "assistant":
            if m["content"]:
                view.append({"role": "user", "content": m["content"]})
        elif m["role"] == "user":
            view.append({**m, "role": "assistant"})
        elif m["role"] == "tool" and owner == "user":
            view.append(m)
    return view


def _append_calls(env: Environment, calls, side: str, messages: list, owners: list) -> None:
    for c in calls:
        content = c.error or env.call(c.name, c.arguments, side).content
        messages.append({"role": "tool", "content": content, "tool_call_id": c.id})
        owners.append(side)


async def run_dialogue(llm: ChatLLM, domain: Domain, task: Task, prompts: PromptSet, *,
                       assistant_sampling: Sampling, user_sampling: Sampling, max_steps: int,
                       cache_tag: str) -> Rollout:
    """Play one dialogue. `max_steps` bounds model calls of both sides together.

    Raises StageFailure (trajectory) when the simulator produces nothing usable; everything the
    assistant does, however wrong, is part of the trajectory and judged later.
    """
    if max_steps < 2:
        raise ValueError(f"max_steps must be >= 2, got {max_steps}")
    env = domain.make_env(task)
    tools, user_tools = env.tools_schema("assistant"), env.tools_schema("user")
    a_system = prompts.render("assistant", domain=domain.name, policy=domain.policy)
    u_system = user_prompt(prompts, task)
    messages: list[dict[str, Any]] = []
    owners: list[str] = []
    turn, termination = "user", "max_steps"
    step = 0
    while step < max_steps:
        tag = f"{cache_tag}/step{step}"
        step += 1
        if turn == "user":
            completion = await chat(llm, user_view(u_system, messages, owners), stage=STAGE,
                                    sampling=user_sampling, cache_tag=tag, tools=user_tools,
                                    attribution="trajectory")
            msg = first_message(completion, STAGE, "trajectory")
            calls = parse_tool_calls(msg, prefix=f"u{step}")
            text = (msg.content or "").strip()
            if not text and not calls:
                raise StageFailure(STAGE, "user_empty", "the user simulator produced an empty "
                                   f"message at step {step}", "trajectory")
            entry: dict[str, Any] = {"role": "user", "content": text}
            if calls:
                entry["tool_calls"] = [c.to_message_call() for c in calls]
            messages.append(entry)
            owners.append("user")
            _append_calls(env, calls, "user", messages, owners)
            ended = termination_of(text)
            if ended:
                termination = ended
                break
            turn = "user" if calls else "assistant"
            continue
        completion = await chat(llm, assistant_view(a_system, messages, owners), stage=STAGE,
                                sampling=assistant_sampling, cache_tag=tag, tools=tools,
                                attribution="trajectory")
        msg = first_message(completion, STAGE, "trajectory")
        calls = parse_tool_calls(msg, prefix=f"a{step}")
        entry = {"role": "assistant", "content": (msg.content or "").strip()}
        if calls:
            entry["tool_calls"] = [c.to_message_call() for c in calls]
        messages.append(entry)
        owners.append("assistant")
        _append_calls(env, calls, "assistant", messages, owners)
        turn = "assistant" if calls else "user"
    return Rollout([{"role": "system", "content": a_system}] + messages, env, termination,
                   step, tools, user_tools)
