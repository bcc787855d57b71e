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
from eigen_jax.rl.user_sim import ReferenceUserSimulator


def _from_openai(messages):
    out = []
    for m in messages:
        r = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            r["tool_calls"] = [{"id": c["id"], "name": c["function"]["name"],
                                "arguments": json.loads(c["function"]["arguments"])}
                               for c in m["tool_calls"]]
        if m.get("tool_call_id"):
            r["tool_call_id"] = m["tool_call_id"]
        out.append(r)
    return out


@pytest.fixture
def reference_agent_server():
    agent = ReferenceAgent(load("outfitter", n_train=0, n_test=6))
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            reply = agent.act(_from_openai(body["messages"]), body.get("tools"))
            calls = [{"id": c["id"], "type": "function", "function": {
                "name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in reply.get("tool_calls") or []]
            msg = {"role": "assistant", "content": reply.get("content") or None,
                   "tool_calls": calls or None}
            data = json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                               "model": "reference", "choices": [{
                                   "index": 0, "message": msg,
                                   "finish_reason": "tool_calls" if calls else "stop"}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                         "total_tokens": 2}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def test_served_reference_agent_solves_every_task(reference_agent_server, tmp_path):
    url, requests = reference_agent_server
    domain = load("outfitter", n_train=0, n_test=6)
    tasks = domain.tasks("test")
    log = TrialLog(tmp_path / "trials.jsonl")
    asyncio.run(evaluate_served(url, domain, tasks, ReferenceUserSimulator(), 2, log, check,
                                concurrency=4))
    result = summarize(log, "outfitter", 2)
    assert result["num_tasks"] == 6
    assert result["pass^k"][1] == 1.0 and result["pass^k"][2] == 1.0
    assert all(r["tools"] for r in requests)  # the domain's tools were offered every call
    n = len(requests)
    asyncio.run(evaluate_served(url, domain, tasks, ReferenceUserSimulator(), 2,
                                TrialLog(tmp_path / "trials.jsonl"), check))
    assert len(requests) == n  # resumed: every trial was done, nothing re-run
