"""The one dialogue protocol against tau2's own code: stop signals, greeting, the user's system
prompt, the role-flipped view; and the loop on tau2 telecom with a scripted user that acts on
its own device (the user's tools run as the user, the checker sees the effect)."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("tau2")

from tau2.orchestrator.orchestrator import DEFAULT_FIRST_AGENT_MESSAGE  # noqa: E402
from tau2.user import base as tau2_user  # noqa: E402
from tau2.user.user_simulator import UserSimulator as Tau2User  # noqa: E402

from data_agents import dialogue as protocol  # noqa: E402
from data_agents.checkers import check  # noqa: E402
from data_agents.domains import load  # noqa: E402
from data_agents.domains.tau2_adapter import to_tau2_messages, to_tau2_task  # noqa: E402

TELECOM_TASK = "[mobile_data_issue]data_saver_mode_on|user_abroad_roaming_enabled_off[PERSONA:Easy]"


@pytest.fixture(scope="module")
def telecom():
    return load("tau2:telecom")


def test_stop_signals_and_greeting_are_tau2s():
    assert set(protocol.STOP_SIGNALS) == {
        tau2_user.STOP,
        tau2_user.TRANSFER,
        tau2_user.OUT_OF_SCOPE,
    }
    assert protocol.GREETING == DEFAULT_FIRST_AGENT_MESSAGE.content
    assert protocol.termination_of(f"thanks {tau2_user.TRANSFER}") == "transfer"
    assert protocol.stop_signal("no signal here") is None


@pytest.mark.parametrize("name", ["airline", "retail", "telecom"])
def test_user_system_prompt_equals_tau2s(name):
    domain = load(f"tau2:{name}")
    env = domain.make_env()
    has_tools = bool(env.tools_schema("user"))
    for task in domain.tasks("test")[:3]:
        tau2_task = to_tau2_task(task)
        tools = list(env.tau2_env.user_tools.get_tools().values()) if has_tools else None
        reference = Tau2User(tools=tools, instructions=str(tau2_task.user_scenario)).system_prompt
        guidelines = protocol.user_guidelines(f"tau2:{name}", has_tools)
        assert protocol.user_system_prompt(task, guidelines) == reference
        assert guidelines == domain.user_policy


def _dual_control_transcript():
    return [
        {"role": "user", "content": "My mobile data is not working."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "a1",
                    "name": "get_customer_by_phone",
                    "arguments": {"phone_number": "555-123-2002"},
                }
            ],
        },
        {"role": "tool", "content": "{...}", "tool_call_id": "a1"},
        {"role": "assistant", "content": "Please check your status bar."},
        {
            "role": "user",
            "content": "",
            "tool_calls": [{"id": "u1", "name": "check_status_bar", "arguments": {}}],
        },
        {"role": "tool", "content": "Status Bar: 5G", "tool_call_id": "u1"},
        {"role": "user", "content": "It shows 5G."},
    ]


def test_user_view_equals_tau2_flip_roles():
    """tau2's `UserState.flip_roles` on the user's share of the same transcript (tau2 routes only
    the agent's texts and the user's own tool results to the user) is our view after the
    system prompt and tau2's greeting."""
    transcript = _dual_control_transcript()
    view = protocol.user_view(transcript, "SYS")
    tau2_msgs = to_tau2_messages(transcript)
    users_share = [
        m
        for m in tau2_msgs
        if m.role == "user"
        or (m.role == "tool" and m.requestor == "user")
        or (m.role == "assistant" and not m.is_tool_call())
    ]
    flipped = tau2_user.UserState(system_messages=[], messages=users_share).flip_roles()
    assert view[:2] == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": protocol.GREETING},
    ]
    assert len(view) - 2 == len(flipped)
    for ours, theirs in zip(view[2:], flipped):
        assert ours["role"] == theirs.role and (ours["content"] or None) == (theirs.content or None)
        calls = [(c["id"], c["name"], c["arguments"]) for c in ours.get("tool_calls", [])]
        assert calls == [
            (c.id, c.name, c.arguments) for c in getattr(theirs, "tool_calls", None) or []
        ]
    agent = protocol.agent_view(transcript, "POLICY")
    assert [m["role"] for m in agent] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]  # never the user's calls or results


def _scripted_user(calls_first: bool):
    """Opens (with words or straight away with its own tool calls), fixes its phone with two
    user tools, then stops — whatever the agent says."""
    script = [
        protocol.Turn("", (protocol.Call("u1", "toggle_data_saver_mode", {}),)),
        protocol.Turn("", (protocol.Call("u2", "toggle_roaming", {}),)),
        protocol.Turn("It works now, thanks! ###STOP###"),
    ]
    if not calls_first:
        script.insert(0, protocol.Turn("My mobile data does not work."))
    views = []

    async def user(view):
        views.append(view)
        return script[len(views) - 1]

    return user, views


def test_loop_runs_the_users_tools_as_the_user_and_the_checker_sees_it(telecom):
    task = next(t for t in telecom.tasks("test") if t.id == TELECOM_TASK)
    agent_views = []

    async def agent(view):
        agent_views.append(view)
        return protocol.Turn("Please turn data saver off and roaming on.")

    user, user_views = _scripted_user(calls_first=False)
    state = protocol.Dialogue(telecom.make_env(task))
    asyncio.run(protocol.play(state, agent, user, telecom.policy, "SYS"))
    assert (state.finish, state.termination) == ("user_stop", "user_stop")
    assert [r.requestor for r in state.env.call_log] == ["user", "user"]
    assert "Data Saver Mode is now OFF" in user_views[2][-1]["content"]  # its own result
    assert all(m["role"] != "tool" for v in agent_views for m in v[1:])  # never the user's
    assert check(telecom, task, state.env, state.messages).reward == 1.0
    # without the user's tool calls the same dialogue fails: the reward is the tools' effect
    state = protocol.Dialogue(telecom.make_env(task))
    state.add("user", protocol.Turn("It works now ###STOP###"))
    assert check(telecom, task, state.env, state.messages).reward == 0.0


def test_limits_and_protocol_errors():
    class Env:
        def call(self, name, arguments, requestor):
            from data_agents.env import ToolResult

            return ToolResult("Error: no", error=True)

    state = protocol.Dialogue(Env(), protocol.Limits(max_steps=100, max_errors=1))
    bad = protocol.Turn("", (protocol.Call("a", "x", {}),))
    assert state.add("assistant", bad) == "assistant" and state.errors == 1
    assert state.add("assistant", bad) is None and state.finish == "max_errors"
    state = protocol.Dialogue(Env(), protocol.Limits(max_steps=2))
    assert state.add("user", protocol.Turn("hi")) == "assistant"
    assert state.add("assistant", protocol.Turn("hello")) is None and state.finish == "max_steps"
    state = protocol.Dialogue(Env())
    assert state.add("user", protocol.Turn("")) is None and state.finish == "user_error"
    state = protocol.Dialogue(Env(), protocol.Limits(max_steps=1))
    assert state.add("user", protocol.Turn("bye ###STOP###")) is None
    assert state.finish == "user_stop"  # the stop wins over the limit it reaches


def test_tau2_messages_round_trip():
    from data_agents.domains.tau2_adapter import from_tau2_messages

    transcript = _dual_control_transcript()
    assert from_tau2_messages(to_tau2_messages(transcript)) == transcript
