"""Balancing across servers and skipping / re-probing unhealthy ones."""

from __future__ import annotations

import asyncio
import collections

import pytest

from data_agents.llm import LLMClient, ServerPool
from tests.data_agents.llm.fake_server import Reply

FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05)


def test_round_robin_when_idle(fake_servers):
    a, b = fake_servers

    async def go():
        async with LLMClient([a.url, b.url]) as llm:
            for i in range(6):
                await llm.generate(f"p{i}")

    asyncio.run(go())
    got_a = [body["text"] for _, p, body in a.requests if p == "/generate"]
    got_b = [body["text"] for _, p, body in b.requests if p == "/generate"]
    assert got_a == ["p0", "p2", "p4"] and got_b == ["p1", "p3", "p5"]


def test_least_outstanding_sends_work_to_the_free_server(fake_servers):
    slow, fast = fake_servers
    slow.default_delay_s = 1.0
    fast.default_delay_s = 0.02

    async def go():
        async with LLMClient([slow.url, fast.url], max_concurrency=4) as llm:
            return await asyncio.gather(*(llm.generate(f"p{i}") for i in range(20)))

    assert len(asyncio.run(go())) == 20
    # Once the slow server holds a request, the free one wins every tie-break on load.
    assert slow.count("/generate") <= 2
    assert fast.count("/generate") >= 18


def test_failing_server_is_skipped_then_reprobed(fake_servers):
    bad, good = fake_servers
    bad.push("/generate", *[Reply(status=503)] * 100)
    bad.push("/health", Reply(status=503))  # the first re-probe fails, the next succeeds

    async def go():
        async with LLMClient([bad.url, good.url], health_cooldown_s=0.5, **FAST) as llm:
            first = [await llm.generate(f"p{i}") for i in range(6)]
            states = {s.url: s.healthy for s in llm.pool.servers}
            await asyncio.sleep(0.55)
            await llm.generate("after-cooldown")  # probe 1 fails → cooldown doubles to 1 s
            bad.queues["/generate"].clear()  # the bad server recovers
            await asyncio.sleep(1.05)
            later = [await llm.generate(f"q{i}") for i in range(4)]
            return first, states, later

    first, states, later = asyncio.run(go())
    assert [o.output_ids for o in later] == [[2, 3, 4]] * 4
    assert len(first) == 6 and states == {bad.url: False, good.url: True}
    assert bad.count("/generate") == 1 + 2  # p0's failed first attempt, then 2 of the 4 later
    assert bad.count("/health") == 2
    assert good.count("/generate") == 6 + 1 + 2


def test_single_unhealthy_server_is_still_tried():
    """With nowhere else to go (one router URL), the retry loop, not the pool, decides."""
    calls = collections.Counter()

    async def probe(url):
        calls[url] += 1
        return False

    async def go():
        pool = ServerPool(["http://only:1"], probe=probe, cooldown_s=10.0)
        url = await pool.acquire()
        pool.release(url, ok=False)
        again = await pool.acquire()  # unhealthy, cooling down, but the only choice
        pool.release(again, ok=True)
        return url, again, pool.servers[0]

    url, again, state = asyncio.run(go())
    assert url == again == "http://only:1"
    assert state.healthy and state.outstanding == 0
    assert calls == {}  # still in cooldown: no probe yet


def test_cooldown_doubles_on_failed_probes_with_fake_clock():
    now = [0.0]

    probes = []

    async def probe(url):
        probes.append((now[0], url))
        return False

    async def go():
        pool = ServerPool(
            ["http://a:1", "http://b:1"],
            probe=probe,
            cooldown_s=1.0,
            max_cooldown_s=3.0,
            clock=lambda: now[0],
        )
        pool.release(await pool.acquire(), ok=False)  # a fails at t=0 → back at t=1
        history = []
        for t in (0.5, 1.0, 3.0, 5.0, 8.0):
            now[0] = t
            history.append(await pool.acquire())
            pool.release(history[-1], ok=True)
        a = pool.servers[0]
        return history, a

    history, a = asyncio.run(go())
    # Due at t=1: probe fails → 2 s (due 3); t=3: → 4 s capped to 3 (due 6); t=5: not due;
    # t=8: fails again → due 11. a never gets traffic.
    assert probes == [(1.0, "http://a:1"), (3.0, "http://a:1"), (8.0, "http://a:1")]
    assert history == ["http://b:1"] * 5
    assert not a.healthy and a.cooldown_s == 3.0 and a.unhealthy_until == 11.0


def test_pool_rejects_bad_configuration():
    async def probe(url):
        return True

    with pytest.raises(ValueError, match="at least one"):
        ServerPool([], probe=probe)
    with pytest.raises(ValueError, match="cooldown"):
        ServerPool(["http://a:1"], probe=probe, cooldown_s=0)
    with pytest.raises(KeyError, match="not in this pool"):
        ServerPool(["http://a:1"], probe=probe).release("http://b:1", ok=True)
