"""The synthesis engine's dual-control path on tau2 telecom with the scripted LLM: a synthesised
task whose gold action is the user's own (`toggle_data` on the phone) and whose checker has an
env assertion on the user's device; the user simulator calls its tool in the dialogue, the
accepted record carries the user tools, the user's call and tau2's assertion passing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("tau2")

from data_agents.domains import load  # noqa: E402
from data_agents.journal import read_journals  # noqa: E402
from data_agents.synthesis import SynthesisConfig, SynthesisEngine  # noqa: E402
from tests.data_agents.agents.fake_llm import FakeLLM, completion  # noqa: E402

ASSERTION = {
    "env_type": "user",
    "func_name": "assert_mobile_data_status",
    "arguments": {"expected_status": False},
    "assert_value": True,
}


def synth(messages, tools, tag):
    if messages[-1]["role"] == "user":  # explore with a read tool of the agent
        return completion(None, [("get_customer_by_phone", {"phone_number": "555-123-2002"})])
    return completion(
        json.dumps(
            {
                "persona": "terse",
                "reason_for_call": "wants mobile data off while travelling",
                "task_instructions": "Turn your mobile data off yourself, then end the call.",
                "actions": [{"name": "toggle_data", "arguments": {}, "requestor": "user"}],
                "env_assertions": [ASSERTION],
                "communicate_info": [],
            }
        )
    )


def user(messages, tools, tag):
    assert tools and "toggle_data" in {t["function"]["name"] for t in tools}  # its own tools
    if not any(m["role"] == "tool" for m in messages):  # its own result is in its view
        return completion(None, [("toggle_data", {})])
    return completion("Data is off now, thanks. ###STOP###")


def test_telecom_user_tools_and_env_assertions_in_synthesis(tmp_path):
    domain = load("tau2:telecom")
    cfg = SynthesisConfig(num_rounds=1, plans_per_round=1, tasks_per_plan=2, poll_s=0.01)
    asyncio.run(
        SynthesisEngine(
            FakeLLM({"task_synth": synth, "user_sim": user}), domain, tmp_path, cfg
        ).run()
    )
    recs = list(read_journals(sorted((Path(tmp_path) / "journals").glob("*.jsonl"))))
    assert len(recs) == 2
    for r in recs:
        assert r.status == "accepted", r.failure
        assert r.task["evaluation_criteria"]["env_assertions"] == [ASSERTION]
        assert "ENV_ASSERTION" in r.task["evaluation_criteria"]["reward_basis"]
        assert "toggle_data" in {t["function"]["name"] for t in r.user_tools}
        calls = [(m["role"], c["name"]) for m in r.messages for c in m.get("tool_calls") or []]
        assert ("user", "toggle_data") in calls
        assert r.verdict["status"] == "pass" and r.verdict["components"]["ENV_ASSERTION"] == 1.0
