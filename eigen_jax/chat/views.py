"""Who sees what: the agent's view and the user simulator's role-flipped view of a dialogue.

The user simulator is trained (user-SFT) and sampled (RL rollouts) as the "assistant" of a flipped
conversation: its system prompt is the task's user scenario, the agent's messages arrive as "user"
messages, and its own messages are the "assistant" turns it learns to produce. Tool calls and tool
results of the agent are invisible to the user (they are not in the flipped view); in dual control
(tau2 telecom) the user's own tool calls and their results stay, as the user's tool use.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

import gin

STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")

USER_GUIDELINES = """You are playing a customer who contacts a customer-service agent.
Follow your instructions below. Reveal information only when the agent needs it, one request at a
time, and never invent facts that are not in your instructions. Answer the agent's questions
truthfully from your instructions. When your goal is met, or the agent cannot help you, end the
conversation by writing ###STOP### alone. If you are transferred to a human, write ###TRANSFER###.
If the agent's request is outside your instructions, write ###OUT-OF-SCOPE###."""


def scenario_text(task: dict[str, Any]) -> str:
    """The user scenario of a tau2-format task as the simulator's instructions."""
    scen = task.get("user_scenario") or {}
    instr = scen.get("instructions")
    parts = []
    if scen.get("persona"):
        parts.append(f"Persona: {scen['persona']}")
    if isinstance(instr, dict):
        for key, title in (("reason_for_call", "Reason for call"), ("known_info", "Known info"),
                           ("unknown_info", "Unknown info"),
                           ("task_instructions", "Task instructions")):
            if instr.get(key):
                parts.append(f"{title}: {instr[key]}")
    elif instr:
        parts.append(str(instr))
    return "\n".join(parts)


def user_system_prompt(task: dict[str, Any], guidelines: str = USER_GUIDELINES) -> str:
    return f"{guidelines}\n\n# Your instructions\n{scenario_text(task)}"


@gin.configurable
def agent_prompt(policy: str, tools: Any, mode: str = "full",
                 compact_system: str = "You are a customer-service agent. Follow the policy.",
                 ) -> tuple[str, list[dict[str, Any]] | None]:
    """(system prompt, tool schemas for the template) the agent is trained and sampled with.

    `full` (default): the domain policy and every tool schema, as tau2 gives them. `compact`: a
    one-line system prompt and no tool listing — for tiny CPU models, where a constant prefix of
    thousands of tokens would dominate compute while carrying nothing a model that is trained on
    the domain's own dialogues needs. SFT data and RL rollouts must use the same mode (both call
    this function, so one gin binding sets both).
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


def user_messages(messages: Sequence[dict[str, Any]], task: dict[str, Any],
                  guidelines: str = USER_GUIDELINES) -> list[dict[str, Any]]:
    """The user simulator's role-flipped view (consecutive same-role texts are merged)."""
    out: list[dict[str, Any]] = [{"role": "system",
                                  "content": user_system_prompt(task, guidelines)}]
    user_call_ids: set[str] = set()
    for m in messages:
        role = m["role"]
        if role == "system":
            continue
        if role == "user":
            msg: dict[str, Any] = {"role": "assistant", "content": m.get("content", "")}
            if m.get("tool_calls"):
                msg["tool_calls"] = [dict(c) for c in m["tool_calls"]]
                user_call_ids.update(str(c["id"]) for c in m["tool_calls"])
            out.append(msg)
        elif role == "assistant":
            if m.get("content"):
                _append_text(out, "user", m["content"])
        elif role == "tool" and str(m.get("tool_call_id")) in user_call_ids:
            out.append({"role": "tool", "content": m.get("content", ""),
                        "tool_call_id": m["tool_call_id"]})
    return out


def _append_text(out: list[dict[str, Any]], role: str, text: str) -> None:
    last = out[-1]
    if last["role"] == role and not last.get("tool_calls"):
        last["content"] = f"{last['content']}\n{text}" if last.get("content") else text
    else:
        out.append({"role": role, "content": text})


def is_stop(text: str) -> str | None:
    """The stop token a user message carries, if any."""
    for tok in STOP_TOKENS:
        if tok in text:
            return tok
    return None


def tools_json(tools: Any) -> list[dict[str, Any]]:
    return json.loads(tools) if isinstance(tools, str) else list(tools or [])
