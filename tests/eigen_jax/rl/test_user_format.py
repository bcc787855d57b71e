"""The in-process user simulator is sampled on exactly the format user-SFT trains it on, dual
control included: the user-objective render of a telecom dialogue (the user's own tool calls and
results in its view) starts with the prompt `ModelUserSimulator` builds for each user turn, and
a sampled user tool call comes back as a protocol `Call`."""

from __future__ import annotations

import types

import numpy as np
import pytest

pytest.importorskip("tau2")

TELECOM_TASK = "[mobile_data_issue]data_saver_mode_on|user_abroad_roaming_enabled_off[PERSONA:Easy]"


def _dialogue():
    from data_agents.domains import load

    telecom = load("tau2:telecom")
    task = next(t for t in telecom.tasks("test") if t.id == TELECOM_TASK)
    messages = [
        {"role": "system", "content": "agent policy"},
        {"role": "user", "content": "My mobile data does not work."},
        {"role": "assistant", "content": "Please turn data saver off."},
        {
            "role": "user",
            "content": "",
            "tool_calls": [{"id": "u1", "name": "toggle_data_saver_mode", "arguments": {}}],
        },
        {"role": "tool", "content": "Data Saver Mode is now OFF.", "tool_call_id": "u1"},
        {"role": "user", "content": "Done. ###STOP###"},
    ]
    return (
        telecom,
        task,
        {
            "domain": "tau2:telecom",
            "task": task.model_dump(mode="json"),
            "messages": messages,
            "user_tools": telecom.make_env().tools_schema("user"),
        },
    )


def test_user_sft_render_extends_every_sampling_prompt(rl_chat):
    from data_agents import dialogue as protocol
    from eigen_jax.chat.conversation import Conversation
    from eigen_jax.data.tokenize import render_for_objective
    from eigen_jax.rl.user_sim import UserTurn

    telecom, task, dialogue = _dialogue()
    trained = render_for_objective(rl_chat, dialogue, "user").tokens
    tools = tuple(dialogue["user_tools"])
    guidelines = protocol.user_guidelines("tau2:telecom", True)
    assert guidelines == telecom.user_policy
    body = dialogue["messages"][1:]
    turns = [i for i, m in enumerate(body) if m["role"] == "user"]
    for i in turns:
        prompt = Conversation.start(
            rl_chat, UserTurn(task, body[:i], "k", tools, guidelines).view(), list(tools)
        ).generation_prompt()
        assert list(trained[: len(prompt)]) == list(prompt), f"user turn at message {i}"


def test_model_user_reply_with_a_tool_call_is_a_call(policy_model, rl_chat):
    from data_agents import dialogue as protocol
    from eigen_jax.rl.user_sim import ModelUserSimulator
    from eigen_jax.sampling.config import SamplerConfig

    sim = ModelUserSimulator(policy_model, rl_chat, sampler=SamplerConfig(num_slots=1, max_len=64))
    text = '<tool_call>\n{"name": "toggle_data", "arguments": {}}\n</tool_call>'
    ids = np.asarray(rl_chat.encode(text) + [rl_chat.end_of_turn_id])
    turn = sim._reply(types.SimpleNamespace(token_ids=ids))
    assert isinstance(turn, protocol.Turn) and turn.content == ""
    assert [(c.name, c.arguments, c.error) for c in turn.calls] == [("toggle_data", {}, None)]
