"""LLMClient against a scripted fake server: parsing, retries, timeouts, 4xx, concurrency, balancing."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from data_agents.llm import (
    LLMClient,
    LLMHTTPError,
    LLMResponseError,
    LLMUnavailableError,
)
from tests.data_agents.llm.fake_server import Reply

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05)


def run(coro):
    return asyncio.run(coro)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_generate_sends_native_payload_and_counts_tokens(fake_server):
    async def go():
        async with LLMClient(fake_server.url) as llm:
            out = await llm.generate(
                input_ids=[4, 5, 6, 7],
                return_logprob=True,
                sampling_params={"max_new_tokens": 3, "temperature": 0.0},
                logprob_start_len=0,
            )
            return out, llm.usage

    out, usage = run(go())
    method, path, body = fake_server.requests[-1]
    assert (method, path) == ("POST", "/generate")
    assert body == {
        "input_ids": [4, 5, 6, 7],
        "return_logprob": True,
        "logprob_start_len": 0,
        "sampling_params": {"max_new_tokens": 3, "temperature": 0.0},
    }
    assert out.output_ids == [5, 6, 7]
    assert out.output_logprobs == [-0.5, -1.0, -1.5]
    assert out.finish_reason == "length"
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (1, 4, 3)


def test_retries_5xx_then_succeeds(fake_server):
    fake_server.push("/generate", Reply(status=503), Reply(status=500))

    async def go():
        async with LLMClient(fake_server.url, max_retries=3, **FAST) as llm:
            return await llm.generate("a b c")

    out = run(go())
    assert out.output_ids == [4, 5, 6]
    assert fake_server.count("/generate") == 3


def test_dropped_connection_is_retried(fake_server):
    fake_server.push("/generate", Reply(drop=True))

    async def go():
        async with LLMClient(fake_server.url, max_retries=2, **FAST) as llm:
            return await llm.generate("x")

    assert run(go()).completion_tokens == 3
    assert fake_server.count("/generate") == 2


@pytest.mark.parametrize("status", [400, 404, 422])
def test_4xx_is_not_retried_and_names_url(fake_server, status):
    fake_server.push("/generate", Reply(status=status, body={"error": "bad sampling_params"}))

    async def go():
        async with LLMClient(fake_server.url, max_retries=3, **FAST) as llm:
            await llm.generate("x")

    with pytest.raises(LLMHTTPError) as err:
        run(go())
    assert err.value.status_code == status
    assert f"{fake_server.url}/generate" in str(err.value)
    assert "bad sampling_params" in str(err.value)
    assert fake_server.count("/generate") == 1


def test_429_is_retried_honouring_retry_after(fake_server):
    fake_server.push("/generate", Reply(status=429, headers={"Retry-After": "0.2"}))

    async def go():
        async with LLMClient(fake_server.url, max_retries=2, **FAST) as llm:
            start = time.monotonic()
            await llm.generate("x")
            return time.monotonic() - start

    assert run(go()) >= 0.2
    assert fake_server.count("/generate") == 2


def test_exhausted_retries_raise_with_url_and_cause(fake_server):
    fake_server.push("/generate", *[Reply(status=502, body={"msg": "bad gateway"})] * 3)

    async def go():
        async with LLMClient(fake_server.url, max_retries=2, **FAST) as llm:
            await llm.generate("x")

    with pytest.raises(LLMUnavailableError) as err:
        run(go())
    assert err.value.attempts == 3
    assert f"{fake_server.url}/generate" in str(err.value) and "HTTP 502" in str(err.value)
    assert fake_server.count("/generate") == 3


def test_timeout_is_retried_then_reported(fake_server):
    fake_server.push("/generate", Reply(delay_s=1.0))

    async def ok_after_one_timeout():
        async with LLMClient(fake_server.url, timeout_s=0.3, max_retries=1, **FAST) as llm:
            return await llm.generate("x")

    assert run(ok_after_one_timeout()).output_ids == [2, 3, 4]

    fake_server.push("/generate", Reply(delay_s=1.0), Reply(delay_s=1.0))

    async def always_slow():
        async with LLMClient(fake_server.url, timeout_s=0.3, max_retries=1, **FAST) as llm:
            await llm.generate("x")

    with pytest.raises(LLMUnavailableError, match="timed out after 0.3s"):
        run(always_slow())


def test_connection_refused_reports_url():
    url = _closed_port_url()

    async def go():
        async with LLMClient(url, max_retries=1, **FAST) as llm:
            await llm.generate("x")

    with pytest.raises(LLMUnavailableError, match=f"{url}/generate.*ConnectError"):
        run(go())


def test_non_json_success_body_is_a_clear_error(fake_server):
    fake_server.push("/generate", Reply(body=b"<html>proxy error</html>"))

    async def go():
        async with LLMClient(fake_server.url, **FAST) as llm:
            await llm.generate("x")

    with pytest.raises(LLMResponseError, match="non-JSON body"):
        run(go())


def test_semaphore_bounds_requests_in_flight(fake_server):
    fake_server.default_delay_s = 0.15

    async def go():
        async with LLMClient(fake_server.url, max_concurrency=3) as llm:
            return await asyncio.gather(*(llm.generate(f"p{i}") for i in range(9)))

    outs = run(go())
    assert len(outs) == 9
    assert fake_server.max_in_flight == 3


def test_chat_sends_tools_and_parses_tool_calls(fake_server):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_order",
                "description": "Look up an order",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            },
        }
    ]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "order?"}]

    async def go():
        async with LLMClient(fake_server.url + "/v1", model="agent", api_key="sk-test") as llm:
            return await llm.chat(messages, tools=tools, tool_choice="auto", temperature=0.0), llm

    completion, llm = run(go())
    method, path, body = fake_server.requests[-1]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert body == {
        "model": "agent",
        "messages": messages,
        "tools": tools,
        "tool_choice": "auto",
        "temperature": 0.0,
    }
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_order" and call.function.arguments == '{"echo": 2}'
    assert (llm.usage.prompt_tokens, llm.usage.completion_tokens) == (14, 2)


def test_health_and_model_info(fake_server):
    dead = _closed_port_url()

    async def go():
        async with LLMClient([fake_server.url, dead]) as llm:
            return await llm.health(), await llm.model_info()

    health, info = run(go())
    assert health == {fake_server.url: True, dead: False}
    assert info["model_path"] == "fake/model"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(), "exactly one of text= or input_ids="),
        (dict(text="a", input_ids=[1]), "exactly one of text= or input_ids="),
        (dict(input_ids=[]), "non-empty sequence"),
        (dict(input_ids=[1, -2]), "non-negative ints"),
    ],
)
def test_generate_rejects_bad_prompts(fake_server, kwargs, message):
    async def go():
        async with LLMClient(fake_server.url) as llm:
            await llm.generate(**kwargs)

    with pytest.raises(ValueError, match=message):
        run(go())
    assert fake_server.requests == []


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="http:// or https://"):
        LLMClient("localhost:30000")
    with pytest.raises(ValueError, match="duplicate"):
        LLMClient(["http://a:1", "http://a:1/"])
    with pytest.raises(ValueError, match="max_concurrency"):
        LLMClient("http://a:1", max_concurrency=0)
    with pytest.raises(ValueError, match="tool_choice given without tools"):
        run(LLMClient("http://a:1").chat([{"role": "user", "content": "x"}], tool_choice="auto"))


def test_timeout_bounds_the_whole_attempt_not_each_read():
    """A server that sends its headers, then one body byte every 0.2 s for 5 s: every single
    read is fast, but the attempt must end at `timeout_s`."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        body = b'{"text": "' + b"x" * 25 + b'"}'
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        try:
            for byte in body:
                conn.sendall(bytes([byte]))
                time.sleep(0.2)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()

    async def go():
        async with LLMClient(url, timeout_s=1.0, max_retries=0, **FAST) as llm:
            await llm.generate("x")

    start = time.perf_counter()
    with pytest.raises(LLMUnavailableError, match="timed out after 1s"):
        run(go())
    assert time.perf_counter() - start < 3.0
    listener.close()
