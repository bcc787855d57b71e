"""Served-agent evaluation over the OpenAI protocol, against an independent reference: an HTTP
server whose replies come from the outfitter REFERENCE agent must score what that agent scores
in-process (it solves every task), and the trial log must make a rerun a no-op."""

import asyncio
import http.server
import json
import threading

import pytest

from data_agents.checkers import check
from data_agents.domains import load
from data_agents.domains.outfitter.reference_agent import ReferenceAgent
from eigen_jax.eval.results import TrialLog, summarize
from eigen_jax.eval.served_agent import evaluate_served
from eigen_jax.rl.user_sim import ReferenceUserSimulator, UserTurn
from tests.eigen_jax.eval.conftest import send_json


def _from_openai(messages):
    out = []
    for m in messages:
        r = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            r["tool_calls"] = [
                {
                    "id": c["id"],
                    "name": c["function"]["name"],
                    "arguments": json.loads(c["function"]["arguments"]),
                }
                for c in m["tool_calls"]
            ]
        if m.get("tool_call_id"):
            r["tool_call_id"] = m["tool_call_id"]
        out.append(r)
    return out


@pytest.fixture
def reference_agent_server():
    agent = ReferenceAgent(load("outfitter", n_train=0, n_test=6))
    requests = []
    refuse_if = []  # predicates on a request body: answer it like a server over its context

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            if any(p(body) for p in refuse_if):
                send_json(
                    self,
                    400,
                    {
                        "object": "error",
                        "message": "messages: prompt of 9999 "
                        "tokens leaves no room to generate within the server's "
                        "max_len=640",
                        "code": 400,
                    },
                )
                return
            reply = agent.act(_from_openai(body["messages"]), body.get("tools"))
            calls = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                }
                for c in reply.get("tool_calls") or []
            ]
            msg = {
                "role": "assistant",
                "content": reply.get("content") or None,
                "tool_calls": calls or None,
            }
            send_json(
                self,
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "reference",
                    "choices": [
                        {
                            "index": 0,
                            "message": msg,
                            "finish_reason": "tool_calls" if calls else "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests, refuse_if
    server.shutdown()


def test_served_reference_agent_solves_every_task(reference_agent_server, tmp_path):
    url, requests, _ = reference_agent_server
    domain = load("outfitter", n_train=0, n_test=6)
    tasks = domain.tasks("test")
    log = TrialLog(tmp_path / "trials.jsonl")
    asyncio.run(
        evaluate_served(url, domain, tasks, ReferenceUserSimulator(), 2, log, check, concurrency=4)
    )
    result = summarize(log, "outfitter", 2)
    assert result["num_tasks"] == 6
    assert result["pass^k"][1] == 1.0 and result["pass^k"][2] == 1.0
    assert all(r["tools"] for r in requests)  # the domain's tools were offered every call
    n = len(requests)
    asyncio.run(
        evaluate_served(
            url,
            domain,
            tasks,
            ReferenceUserSimulator(),
            2,
            TrialLog(tmp_path / "trials.jsonl"),
            check,
        )
    )
    assert len(requests) == n  # resumed: every trial was done, nothing re-run


def test_overflow_fails_one_trial_and_limits_apply(reference_agent_server, tmp_path):
    """A 400 context overflow on one task's requests scores those trials 0 (`max_context`) while
    the others complete and pass; max_steps / max_errors end trials as limits, reward 0."""
    from data_agents.dialogue import Limits

    url, requests, refuse_if = reference_agent_server
    domain = load("outfitter", n_train=0, n_test=6)
    tasks = domain.tasks("test")
    doomed = tasks[2]
    # the reference user's opening names the task's customer: refuse exactly that dialogue
    opening = ReferenceUserSimulator().respond([UserTurn(doomed, [], "")])[0]
    refuse_if[:] = [lambda body: body["messages"][1]["content"] == opening]
    log = TrialLog(tmp_path / "trials.jsonl")
    asyncio.run(evaluate_served(url, domain, tasks, ReferenceUserSimulator(), 1, log, check))
    result = summarize(log, "outfitter", 1)
    assert result["tasks"][doomed.id][0]["finish_reason"] == "max_context"
    assert result["tasks"][doomed.id][0]["reward"] == 0.0
    assert "max_len=640" in result["tasks"][doomed.id][0]["reason"]
    assert result["pass^k"][1] == 5 / 6  # every other task still passes
    refuse_if.clear()
    short = TrialLog(tmp_path / "short.jsonl")
    asyncio.run(
        evaluate_served(
            url,
            domain,
            tasks[:2],
            ReferenceUserSimulator(),
            1,
            short,
            check,
            limits=Limits(max_steps=3),
        )
    )
    assert {t["finish_reason"] for t in short.trials.values()} == {"max_steps"}
    assert all(t["reward"] == 0.0 for t in short.trials.values())


TELECOM_TASK = "[mobile_data_issue]data_saver_mode_on|user_abroad_roaming_enabled_off[PERSONA:Easy]"


def test_served_tau2_telecom_with_a_user_acting_on_its_device(text_agent_server, tmp_path):
    """Served evaluation on tau2:telecom: the scripted user opens, the agent answers, the user
    runs two of its own tools (as the user) and stops; tau2's env assertions pass. The agent's
    requests never carry the user's tool calls or results."""
    from data_agents.dialogue import Call, Turn
    from eigen_jax.rl.user_sim import UserSimulator

    class User(UserSimulator):
        script = [
            Turn("My mobile data does not work."),
            Turn("", (Call("u1", "toggle_data_saver_mode", {}),)),
            Turn("", (Call("u2", "toggle_roaming", {}),)),
            Turn("Fixed! ###STOP###"),
        ]

        def respond(self, turns):
            return [self.script[sum(m["role"] == "user" for m in t.messages)] for t in turns]

    url, requests = text_agent_server
    domain = load("tau2:telecom")
    task = next(t for t in domain.tasks("test") if t.id == TELECOM_TASK)
    log = TrialLog(tmp_path / "trials.jsonl")
    asyncio.run(evaluate_served(url, domain, [task], User(), 1, log, check))
    trial = log.trials[(task.id, 0)]
    assert (trial["finish_reason"], trial["reward"]) == ("user_stop", 1.0)
    assert len(requests) == 1 and requests[0]["tools"]
    assert [m["role"] for m in requests[0]["messages"]] == ["system", "user"]


def test_a_user_that_cannot_answer_fails_only_its_trial(reference_agent_server, tmp_path):
    """The in-process user's context overflow on one task ends that trial (`max_context`);
    the others are played and scored as usual."""
    from eigen_jax.rl.user_sim import ContextOverflow

    url, _, _ = reference_agent_server
    domain = load("outfitter", n_train=0, n_test=6)
    tasks = domain.tasks("test")

    class Overflowing(ReferenceUserSimulator):
        def respond(self, turns):
            if any(t.task.id == tasks[0].id and t.messages for t in turns):
                raise ContextOverflow("user-simulator prompt of 9999 tokens exceeds max_len=64")
            return super().respond(turns)

    log = TrialLog(tmp_path / "trials.jsonl")
    asyncio.run(evaluate_served(url, domain, tasks, Overflowing(), 1, log, check))
    trials = {t["task_id"]: t for t in log.trials.values()}
    assert (trials[tasks[0].id]["finish_reason"], trials[tasks[0].id]["reward"]) == (
        "max_context",
        0.0,
    )
    assert all(trials[t.id]["reward"] == 1.0 for t in tasks[1:])
