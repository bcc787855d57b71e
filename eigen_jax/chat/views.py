"""Who sees what: the agent's view and the user simulator's role-flipped view of a dialogue.

The user simulator is trained (user-SFT) and sampled (RL rollouts) as the "assistant" of a flipped
conversation: its system prompt is the task's user scenario, the agent's messages arrive as "user"
messages, and its own messages are the "assistant" turns it learns to produce. Tool calls and tool
results of the agent are invisible to the user (they are not in the flipped view); in dual control
(tau2 telecom) the user's own tool calls and their results stay, as the user's tool use. The views,
stop signals and the user's system prompt are `data_agents.dialogue`'s (one protocol everywhere).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import gin

from data_agents import dialogue as protocol

STOP_TOKENS = tuple(protocol.STOP_SIGNALS)  # tau2's, from the one dialogue protocol
USER_GUIDELINES = protocol.DEFAULT_USER_GUIDELINES
scenario_text = protocol.scenario_text


def user_guidelines(domain: str = "", user_tools: Any = None) -> str:
    """The domain's user guidelines (tau2's own for tau2 domains), as the rollouts use them."""
    return protocol.user_guidelines(domain or "", bool(user_tools))


def user_system_prompt(task: dict[str, Any], guidelines: str = USER_GUIDELINES) -> str:
    return protocol.user_system_prompt(task, guidelines)


COMPACT_SYSTEM = "You are a customer-service agent. Follow the policy."


@gin.configurable
def agent_prompt(
    policy: str, tools: Any, mode: str = "full", compact_system: str = COMPACT_SYSTEM
) -> tuple[str, list[dict[str, Any]] | None]:
    """(system prompt, tool schemas for the template) the agent is trained and sampled with.

    `full` (default): the domain policy and every tool schema, as tau2 gives them. `compact`: a
    one-line system prompt and no tool listing — for tiny CPU models, where a constant prefix of
    thousands of tokens would dominate compute while carrying nothing a model that is trained on
    the domain's own dialogues needs. SFT data and RL rollouts must use the same mode (both call
    this function, so one gin binding sets both). Exported checkpoints record the mode
    (`prompt_format.json`) so the server renders requests the same way.
    """
    if mode == "full":
        return policy, tools_json(tools) or None
    if mode == "compact":
        return compact_system, None
    raise ValueError(f"unknown agent prompt mode {mode!r}; expected 'full' or 'compact'")


def agent_messages(messages: Sequence[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """The agent's view: `system` (from `agent_prompt`), then the dialogue as recorded."""
    body = [m for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": system}] + [dict(m) for m in body]


def user_messages(
    messages: Sequence[dict[str, Any]], task: dict[str, Any], guidelines: str = USER_GUIDELINES
) -> list[dict[str, Any]]:
    """The user simulator's role-flipped view (`data_agents.dialogue.user_view`: tau2's greeting
    first, the user's own tool calls and results kept, consecutive agent texts merged)."""
    return protocol.user_view(
        [m for m in messages if m["role"] != "system"], user_system_prompt(task, guidelines)
    )


def is_stop(text: str) -> str | None:
    """The stop token a message carries, if any."""
    return protocol.stop_signal(text)


def tools_json(tools: Any) -> list[dict[str, Any]]:
    return json.loads(tools) if isinstance(tools, str) else list(tools or [])
