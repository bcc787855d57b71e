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

from data_agents import dialogue as protocol
from data_agents.agents.base import ChatLLM, Sampling, chat
from data_agents.agents.parsing import StageFailure, first_message
from data_agents.domains.base import Domain
from data_agents.domains.task import StructuredUserInstructions, Task
from data_agents.env import Environment
from data_agents.prompts import PromptSet

STAGE = "rollout"


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
        fields = {
            "reason_for_call": ins.reason_for_call,
            "known_info": ins.known_info or "",
            "unknown_info": ins.unknown_info or "",
            "task_instructions": ins.task_instructions,
        }
    else:
        fields = {
            "reason_for_call": "",
            "known_info": "",
            "unknown_info": "",
            "task_instructions": ins,
        }
    return prompts.render("user_sim", persona=task.user_scenario.persona or "", **fields)


async def run_dialogue(
    llm: ChatLLM,
    domain: Domain,
    task: Task,
    prompts: PromptSet,
    *,
    assistant_sampling: Sampling,
    user_sampling: Sampling,
    max_steps: int,
    cache_tag: str,
) -> Rollout:
    """Play one dialogue. `max_steps` bounds model calls of both sides together.

    Raises StageFailure (trajectory) when the simulator produces nothing usable; everything the
    assistant does, however wrong, is part of the trajectory and judged later.
    """
    if max_steps < 2:
        raise ValueError(f"max_steps must be >= 2, got {max_steps}")
    env = domain.make_env(task)
    tools, user_tools = env.tools_schema("assistant"), env.tools_schema("user")
    a_system = prompts.render("assistant", domain=domain.name, policy=domain.policy)
    calls = 0

    def speaker(side: str, sampling: Sampling, side_tools: list[dict]):
        async def speak(view: list[dict]) -> protocol.Turn:
            nonlocal calls
            if calls >= max_steps:  # synthesis bounds model calls, not messages
                raise protocol.EpisodeEnd("max_steps")
            calls += 1
            completion = await chat(
                llm,
                view,
                stage=STAGE,
                sampling=sampling,
                cache_tag=f"{cache_tag}/step{calls - 1}",
                tools=side_tools,
                attribution="trajectory",
            )
            turn = protocol.turn_from_message(
                first_message(completion, STAGE, "trajectory"), prefix=f"{side[0]}{calls}"
            )
            if side == "user" and not turn.content and not turn.calls:
                raise StageFailure(
                    STAGE,
                    "user_empty",
                    f"the user simulator produced an empty message at step {calls}",
                    "trajectory",
                )
            return turn

        return speak

    state = protocol.Dialogue(env, protocol.Limits(max_steps=10**9, max_errors=10**9))
    await protocol.play(
        state,
        speaker("assistant", assistant_sampling, tools),
        speaker("user", user_sampling, user_tools),
        a_system,
        user_prompt(prompts, task),
    )
    return Rollout(
        [{"role": "system", "content": a_system}] + state.messages,
        env,
        state.termination or "max_steps",
        calls,
        tools,
        user_tools,
    )
