"""The on-disk response cache: keys, hits through the client, re-runs, concurrent writers."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3

import pytest

from data_agents.llm import LLMClient, LLMHTTPError, LLMResponseError, ResponseCache, cache_key
from tests.data_agents.llm.fake_server import Reply


def test_key_is_canonical_and_sensitive():
    a = cache_key("/generate", {"text": "hi", "sampling_params": {"t": 0, "n": 1}})
    b = cache_key("/generate", {"sampling_params": {"n": 1, "t": 0}, "text": "hi"})
    assert a == b  # key order does not matter
    assert a != cache_key("/generate", {"text": "hi", "sampling_params": {"t": 0, "n": 2}})
    assert a != cache_key(
        "/v1/chat/completions", {"text": "hi", "sampling_params": {"t": 0, "n": 1}}
    )
    assert a != cache_key("/generate", {"text": "hi", "sampling_params": {"t": 0, "n": 1}}, "m2")


def test_non_json_payload_is_rejected(tmp_path):
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            cache.put("/generate", {"x": object()}, {})
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            cache.get("/generate", {"x": float("nan")})


def test_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ValueError, match="not a usable SQLite response cache"):
        ResponseCache(path)


def test_put_is_durable_without_close(tmp_path):
    """A process that dies right after put() has still committed the row."""
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.put("/generate", {"text": "a"}, {"text": "b"})
    # Read with an independent connection while the writer is still open (never closed).
    row = sqlite3.connect(path).execute("SELECT endpoint, response FROM responses").fetchone()
    assert row[0] == "/generate" and json.loads(row[1]) == {"text": "b"}


def test_client_cache_hits_skip_the_network_and_survive_a_rerun(fake_server, tmp_path):
    path = tmp_path / "llm.sqlite"

    async def first_run():
        async with LLMClient(fake_server.url, cache=path) as llm:
            a = await llm.generate("one two", sampling_params={"max_new_tokens": 3})
            b = await llm.generate("one two", sampling_params={"max_new_tokens": 3})
            c = await llm.generate("one two", sampling_params={"max_new_tokens": 4})
            d = await llm.generate("one two", sampling_params={"max_new_tokens": 3}, cache_tag="s1")
            e = await llm.generate(
                "one two", sampling_params={"max_new_tokens": 3}, use_cache=False
            )
            return (a, b, c, d, e), llm.usage, llm.cached_usage

    (a, b, *_), usage, cached = asyncio.run(first_run())
    assert a == b
    assert fake_server.count("/generate") == 4  # b was a hit; c, d, e were not
    assert (usage.requests, cached.requests) == (4, 1)
    assert cached.prompt_tokens == a.prompt_tokens

    # The cache_tag only changes the key, never the request body.
    bodies = [body for _, path_, body in fake_server.requests if path_ == "/generate"]
    assert all("cache_tag" not in body for body in bodies)

    fake_server.close()  # the re-run must not need the server at all

    async def rerun():
        async with LLMClient(fake_server.url, cache=path, max_retries=0) as llm:
            return await llm.generate("one two", sampling_params={"max_new_tokens": 3}), llm

    again, llm = asyncio.run(rerun())
    assert again == a
    assert (llm.usage.requests, llm.cached_usage.requests) == (0, 1)


def test_failed_calls_are_not_cached(fake_server, tmp_path):
    fake_server.push("/generate", Reply(status=400))

    async def go():
        async with LLMClient(fake_server.url, cache=tmp_path / "c.sqlite") as llm:
            with pytest.raises(LLMHTTPError):
                await llm.generate("x")
            return await llm.generate("x")

    assert asyncio.run(go()).output_ids == [2, 3, 4]
    assert fake_server.count("/generate") == 2


def _writer(path: str, worker: int, n: int) -> None:
    cache = ResponseCache(path)
    for i in range(n):
        cache.put("/generate", {"worker": worker, "i": i}, {"value": worker * 1000 + i})


def test_concurrent_processes_share_one_cache(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ResponseCache(path).close()  # create schema once, as a launcher would
    ctx = multiprocessing.get_context("fork")  # no threads yet in this test; spawn is 10x slower
    procs = [ctx.Process(target=_writer, args=(path, w, 150)) for w in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    with ResponseCache(path) as cache:
        assert len(cache) == 450
        assert cache.get("/generate", {"worker": 2, "i": 149}) == {"value": 2149}


def test_concurrent_tasks_in_one_client(fake_server, tmp_path):
    path = tmp_path / "c.sqlite"

    async def go():
        async with LLMClient(fake_server.url, cache=path, max_concurrency=8) as llm:
            outs = await asyncio.gather(*(llm.generate(f"w{i} " * (i + 1)) for i in range(40)))
            again = await asyncio.gather(*(llm.generate(f"w{i} " * (i + 1)) for i in range(40)))
            return outs, again

    outs, again = asyncio.run(go())
    assert outs == again
    assert [o.prompt_tokens for o in outs] == list(range(1, 41))
    assert fake_server.count("/generate") == 40
    with ResponseCache(path) as cache:
        assert len(cache) == 40


def test_malformed_answers_are_not_cached(fake_server, tmp_path):
    fake_server.push("/generate", Reply(body={"text": "no meta_info"}))

    async def go():
        async with LLMClient(fake_server.url, cache=tmp_path / "c.sqlite") as llm:
            with pytest.raises(LLMResponseError, match="lacks meta_info"):
                await llm.generate("x")
            return await llm.generate("x")

    assert asyncio.run(go()).output_ids == [2, 3, 4]
    assert fake_server.count("/generate") == 2
