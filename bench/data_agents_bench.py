"""Throughput of the synthesis engine against a real server, relative to the server's capacity.

Measures, in one run against the same server:
  1. the engine: one round of P plans x T tasks at instance concurrency C (LLMClient with C
     requests in flight, no response cache) → instances/min and achieved requests/s;
  2. the server's capacity at the same concurrency: the very requests the engine sent (recorded),
     replayed raw — C concurrent httpx workers, no client stack, no agents → requests/s.
The ratio engine/raw says how much of the server the engine keeps busy: below 1 the engine is
the bottleneck (sequential dependencies inside a dialogue, environment and parsing time).

    python bench/data_agents_bench.py --server_url http://127.0.0.1:30000 --concurrency 8
Prints a table and writes JSON (--out). Use a server whose context fits the prompts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

import httpx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data_agents.domains import load
from data_agents.engine import Engine, EngineConfig
from data_agents.llm import LLMClient


class RecordingClient(LLMClient):
    """LLMClient that keeps every chat payload, so the raw replay sends exactly the same work."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.payloads: list[dict] = []

    async def chat(self, messages, *, tools=None, tool_choice=None, model=None, use_cache=True,
                   cache_tag=None, **params):
        payload = {"model": model or self.model or "default", "messages": list(messages), **params}
        if tools is not None:
            payload["tools"] = list(tools)
        self.payloads.append(payload)
        return await super().chat(messages, tools=tools, tool_choice=tool_choice, model=model,
                                  use_cache=use_cache, cache_tag=cache_tag, **params)


async def bench_engine(url: str, args) -> dict:
    cfg = EngineConfig(num_rounds=1, plans_per_round=args.plans, tasks_per_plan=args.tasks,
                       max_concurrency=args.concurrency, max_tokens=args.max_tokens,
                       judge_max_tokens=args.max_tokens, max_explore_steps=args.explore_steps,
                       max_dialogue_steps=args.dialogue_steps)
    out = tempfile.mkdtemp(prefix="da_bench_")
    async with RecordingClient(url, max_concurrency=args.concurrency, max_retries=1) as llm:
        t0 = time.perf_counter()
        report = await Engine(llm, load(args.domain), out, cfg).run()
        wall = time.perf_counter() - t0
        return {"wall_s": wall, "instances": report["total"], "accepted": report["accepted"],
                "requests": llm.usage.requests, "payloads": llm.payloads,
                "completion_tokens": llm.usage.completion_tokens,
                "failures": report["rounds"][0]["failures_by_category"]}


async def bench_raw(url: str, payloads: list[dict], concurrency: int) -> dict:
    queue = list(payloads)
    statuses: dict[int, int] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop()
            r = await client.post(url.rstrip("/") + "/v1/chat/completions", json=body)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    async with httpx.AsyncClient(timeout=600) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "requests": len(payloads), "statuses": statuses}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server_url", required=True)
    p.add_argument("--domain", default="outfitter")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--plans", type=int, default=4)
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--max_tokens", type=int, default=32)
    p.add_argument("--explore_steps", type=int, default=3)
    p.add_argument("--dialogue_steps", type=int, default=6)
    p.add_argument("--out", default="bench/data_agents_bench.json")
    args = p.parse_args()
    eng = asyncio.run(bench_engine(args.server_url, args))
    raw = asyncio.run(bench_raw(args.server_url, eng.pop("payloads"), args.concurrency))
    engine_rps = eng["requests"] / eng["wall_s"]
    raw_rps = raw["requests"] / raw["wall_s"]
    result = {"config": vars(args), "engine": eng, "raw": raw,
              "instances_per_min": 60 * eng["instances"] / eng["wall_s"],
              "engine_requests_per_s": engine_rps, "raw_requests_per_s": raw_rps,
              "engine_over_raw": engine_rps / raw_rps}
    rows = [("instances", eng["instances"], ""), ("accepted", eng["accepted"], ""),
            ("engine wall (s)", f"{eng['wall_s']:.1f}", ""),
            ("instances/min", f"{result['instances_per_min']:.2f}", ""),
            ("requests (engine = raw)", eng["requests"], ""),
            ("engine req/s", f"{engine_rps:.3f}", ""),
            ("raw req/s (same requests, same concurrency)", f"{raw_rps:.3f}", ""),
            ("engine / raw", f"{result['engine_over_raw']:.2f}", "")]
    width = max(len(r[0]) for r in rows)
    print(f"data_agents bench  server={args.server_url}  concurrency={args.concurrency}")
    for name, value, _ in rows:
        print(f"  {name:<{width}}  {value}")
    print(f"  failures: {eng['failures']}  raw statuses: {raw['statuses']}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
