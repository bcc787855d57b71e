"""A scriptable fake SGLang server (stdlib HTTP, in a thread) for the client's tests.

It answers ``/generate``, ``/v1/chat/completions``, ``/health`` and ``/get_model_info`` in the
servers' wire format, records every request, tracks how many were in flight at once, and can be
told to answer the next requests on a path with a given status, a delay, or a dropped
connection — the failure modes the client must survive.
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import json
import threading
import time


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: object = None  # None → the default answer for the path
    delay_s: float = 0.0
    drop: bool = False  # close the socket without answering
    headers: dict = dataclasses.field(default_factory=dict)


def default_generate(request: dict) -> dict:
    """Deterministic sglang-shaped answer: output ids are the prompt length + 1..3."""
    n_prompt = len(request.get("input_ids") or request.get("text", "").split())
    ids = [n_prompt + k for k in (1, 2, 3)]
    meta = {
        "id": "fake",
        "finish_reason": {"type": "length", "length": 3},
        "prompt_tokens": n_prompt,
        "completion_tokens": 3,
        "cached_tokens": 0,
    }
    if request.get("return_logprob"):
        meta["output_token_logprobs"] = [[-0.5 * k, t, None] for k, t in enumerate(ids, 1)]
    return {"text": " ".join(f"t{t}" for t in ids), "output_ids": ids, "meta_info": meta}


def default_chat(request: dict) -> dict:
    message = {"role": "assistant", "content": "ok", "tool_calls": None}
    finish = "stop"
    if request.get("tools"):
        name = request["tools"][0]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": json.dumps({"echo": len(request["messages"])}),
                    },
                }
            ],
        }
        finish = "tool_calls"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 7 * len(request["messages"]),
            "completion_tokens": 2,
            "total_tokens": 7 * len(request["messages"]) + 2,
        },
    }


class FakeServer:
    def __init__(self):
        self.requests: list[tuple[str, str, object]] = []  # (method, path, json body)
        self.queues: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.default_delay_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _handle(self, method):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with fake._lock:
                    fake.requests.append((method, self.path, body))
                    queue = fake.queues.get(self.path)
                    reply = queue.popleft() if queue else Reply(delay_s=fake.default_delay_s)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    time.sleep(reply.delay_s)
                    if reply.drop:
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    payload = (
                        reply.body if reply.body is not None else fake.default(self.path, body)
                    )
                    status = reply.status if payload is not None else 404
                    payload = (
                        payload if payload is not None else {"detail": f"no route {self.path}"}
                    )
                    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @staticmethod
    def default(path: str, body) -> object:
        if path == "/generate":
            return default_generate(body)
        if path == "/v1/chat/completions":
            return default_chat(body)
        if path == "/health":
            return {}
        if path == "/get_model_info":
            return {"model_path": "fake/model", "is_generation": True}
        return None

    def push(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self.queues[path].extend(replies)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p, _ in self.requests if p == path)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
