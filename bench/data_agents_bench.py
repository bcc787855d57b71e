"""Throughput of the synthesis engine against a real server, relative to the server's capacity.

Measures, in one run against the same server:
  1. the engine: one round of P plans x T tasks at instance concurrency C (LLMClient with C
     requests in flight, no response cache) → instances/min and achieved requests/s;
  2. the server's capacity at the same concurrency: the very requests the engine sent (recorded
     at the transport, in the order sent), replayed raw — C concurrent httpx workers, no client
     stack, no agents → requests/s.
The ratio engine/raw says how much of the server the engine keeps busy: below 1 the engine is
the bottleneck (sequential dependencies inside a round and a dialogue, client overhead). The
server's prefix (radix) cache is flushed before each phase, so the replay does not find the
engine's prompts already cached. Also reported: mean requests in flight (sum of request
latencies / wall) for both phases, and the engine's planner phase (one request at a time by
design: a round's instances need its plans) separately from its instance phase.

    # against a running server whose context fits the prompts:
    python bench/data_agents_bench.py --server_url http://127.0.0.1:30000 --concurrency 8
    # or start a CPU sglang-jax server on a tiny Qwen3 sized for the prompts, and stop it after
    # (defaults: scripted model, C=4, 4 plans x 2 tasks, 2 alternated engine/raw pairs):
    python bench/data_agents_bench.py --start_server

Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import httpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.sglang_bench_server import (  # noqa: E402
    BENCH_MODEL_SPEC,
    BENCH_VOCAB,
    bench_server_flags,
    bench_tokenizer_corpus,
    build_scripted_model,
)
from data_agents.domains import load
from data_agents.llm import LLMClient
from data_agents.llm.client import CHAT_PATH
from data_agents.synthesis import SynthesisConfig, SynthesisEngine


class RecordingClient(LLMClient):
    """LLMClient that keeps every chat request it sends (payload, stage, start/end times), so the
    raw replay sends exactly the same work and the report can split the run into phases."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.sent: list[dict] = []
        self.t0 = time.perf_counter()

    async def _cached_post(self, path, payload, use_cache, cache_tag, parse):
        start = time.perf_counter() - self.t0
        try:
            return await super()._cached_post(path, payload, use_cache, cache_tag, parse)
        finally:
            if path == CHAT_PATH:
                self.sent.append(
                    {
                        "payload": payload,
                        "stage": stage_of(cache_tag),
                        "start": start,
                        "end": time.perf_counter() - self.t0,
                    }
                )


def stage_of(cache_tag: str | None) -> str:
    """`plan/r000/attempt0` → plan; `r000/s0001/t000/synth/step0` → synth."""
    parts = (cache_tag or "?").split("/")
    if len(parts) > 3 and parts[0].startswith("r") and parts[1].startswith("s"):
        return parts[3]
    return parts[0]


async def flush_cache(url: str) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(url.rstrip("/") + "/flush_cache")
        if r.status_code != 200:
            raise RuntimeError(f"/flush_cache answered {r.status_code}: {r.text[:200]}")


def in_flight(spans: list[tuple[float, float]], wall: float) -> float:
    return sum(e - s for s, e in spans) / wall if wall > 0 else 0.0


async def bench_engine(url: str, args) -> dict:
    cfg = SynthesisConfig(
        num_rounds=1,
        plans_per_round=args.plans,
        tasks_per_plan=args.tasks,
        max_concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        judge_max_tokens=args.max_tokens,
        max_explore_steps=args.explore_steps,
        max_dialogue_steps=args.dialogue_steps,
    )
    out = tempfile.mkdtemp(prefix="da_bench_")
    async with RecordingClient(url, max_concurrency=args.concurrency, max_retries=1) as llm:
        llm.t0 = t0 = time.perf_counter()
        report = await SynthesisEngine(llm, load(args.domain), out, cfg).run()
        wall = time.perf_counter() - t0
        sent = sorted(llm.sent, key=lambda r: r["start"])
        plan_end = max((r["end"] for r in sent if r["stage"] == "plan"), default=0.0)
        after = [r for r in sent if r["start"] >= plan_end]
        stages: dict[str, int] = {}
        for r in sent:
            stages[r["stage"]] = stages.get(r["stage"], 0) + 1
        return {
            "wall_s": wall,
            "instances": report["total"],
            "accepted": report["accepted"],
            "requests": llm.usage.requests,
            "payloads": [r["payload"] for r in sent],
            "prompt_tokens": llm.usage.prompt_tokens,
            "completion_tokens": llm.usage.completion_tokens,
            "requests_by_stage": stages,
            "planner_phase_s": plan_end,
            "instance_phase_s": wall - plan_end,
            "instance_phase_requests": len(after),
            "mean_in_flight": in_flight([(r["start"], r["end"]) for r in sent], wall),
            "instance_phase_mean_in_flight": in_flight(
                [(r["start"], r["end"]) for r in after], wall - plan_end
            ),
            "failures": report["rounds"][0]["failures_by_category"],
        }


async def bench_raw(url: str, payloads: list[dict], concurrency: int) -> dict:
    """Replay `payloads` in order with `concurrency` workers, each sending its next request as
    soon as its previous one is answered."""
    queue = list(payloads)
    statuses: dict[int, int] = {}
    spans: list[tuple[float, float]] = []
    tokens = {"prompt_tokens": 0, "completion_tokens": 0}

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop(0)
            start = time.perf_counter()
            r = await client.post(url.rstrip("/") + CHAT_PATH, json=body)
            spans.append((start, time.perf_counter()))
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                usage = r.json().get("usage") or {}
                for k in tokens:
                    tokens[k] += int(usage.get(k) or 0)

    limits = httpx.Limits(max_connections=concurrency + 8)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "requests": len(payloads),
        "statuses": statuses,
        **tokens,
        "mean_in_flight": in_flight([(s - t0, e - t0) for s, e in spans], wall),
    }


def server_facts(url: str) -> dict:
    facts: dict = {}
    for route in ("/get_model_info", "/get_server_info"):
        try:
            r = httpx.get(url.rstrip("/") + route, timeout=30)
            facts[route] = r.json() if r.status_code == 200 else {"status": r.status_code}
        except (httpx.HTTPError, ValueError) as err:
            facts[route] = {"error": str(err)}
    info = facts.get("/get_server_info") or {}
    keep = (
        "context_length",
        "max_running_requests",
        "max_total_tokens",
        "chunked_prefill_size",
        "precompile_token_paddings",
        "precompile_bs_paddings",
        "disable_precompile",
        "attention_backend",
        "device",
        "dtype",
        "disable_radix_cache",
        "page_size",
        "schedule_policy",
        "version",
    )
    facts["/get_server_info"] = {k: info[k] for k in keep if k in info}
    return facts


def run(url: str, args) -> dict:
    """Engine and raw phases, alternated over `args.repeats` pairs (E R, R E, E R, ...) so that a
    drift in the machine's load hits both sides alike; headline rates are total requests over
    total wall time per side. The radix cache is flushed before every phase."""
    load_before = os.getloadavg()
    engine_runs: list[dict] = []
    raw_runs: list[dict] = []
    payloads: list[dict] | None = None
    for pair in range(args.repeats):
        order = ("engine", "raw") if pair % 2 == 0 else ("raw", "engine")
        for side in order:
            asyncio.run(flush_cache(url))
            if side == "engine":
                eng = asyncio.run(bench_engine(url, args))
                sent = eng.pop("payloads")
                payloads = sent if payloads is None else payloads
                engine_runs.append(eng)
            else:
                raw_runs.append(asyncio.run(bench_raw(url, payloads, args.concurrency)))
    load_after = os.getloadavg()

    def total(runs, key):
        return sum(r[key] for r in runs)

    e_wall, r_wall = total(engine_runs, "wall_s"), total(raw_runs, "wall_s")
    engine_rps = total(engine_runs, "requests") / e_wall
    raw_rps = total(raw_runs, "requests") / r_wall
    inst_s = total(engine_runs, "instance_phase_s")
    inst_rps = total(engine_runs, "instance_phase_requests") / inst_s if inst_s > 0 else 0.0
    e_tok = total(engine_runs, "prompt_tokens") + total(engine_runs, "completion_tokens")
    r_tok = total(raw_runs, "prompt_tokens") + total(raw_runs, "completion_tokens")
    return {
        "config": vars(args),
        "engine_runs": engine_runs,
        "raw_runs": raw_runs,
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "server": server_facts(url),
        "instances_per_min": 60 * total(engine_runs, "instances") / e_wall,
        "engine_requests_per_s": engine_rps,
        "raw_requests_per_s": raw_rps,
        "engine_over_raw": engine_rps / raw_rps,
        "per_pair_engine_over_raw": [
            (e["requests"] / e["wall_s"]) / (r["requests"] / r["wall_s"])
            for e, r in zip(engine_runs, raw_runs)
        ],
        "engine_instance_phase_requests_per_s": inst_rps,
        "engine_instance_phase_over_raw": inst_rps / raw_rps,
        "engine_tokens_per_s": e_tok / e_wall,
        "raw_tokens_per_s": r_tok / r_wall,
    }


def _avg(runs: list[dict], key: str, weight: str) -> float:
    w = sum(r[weight] for r in runs)
    return sum(r[key] * r[weight] for r in runs) / w if w > 0 else 0.0


def print_table(result: dict, url: str) -> None:
    engs, raws, c = result["engine_runs"], result["raw_runs"], result["config"]
    eng, raw = engs[0], raws[0]
    in_flight_text = (
        f"{_avg(engs, 'mean_in_flight', 'wall_s'):.2f} / "
        f"{_avg(raws, 'mean_in_flight', 'wall_s'):.2f} (engine instance phase "
        f"{_avg(engs, 'instance_phase_mean_in_flight', 'instance_phase_s'):.2f})"
    )
    rows = [
        (
            "runs per side",
            (
                f"{len(engs)} (engine walls {[round(e['wall_s'], 1) for e in engs]}, "
                f"raw walls {[round(r['wall_s'], 1) for r in raws]})"
            ),
        ),
        ("instances (accepted)", f"{eng['instances']} ({eng['accepted']})"),
        ("requests (engine = raw)", f"{eng['requests']}  by stage {eng['requests_by_stage']}"),
        (
            "engine wall, first run (s)",
            (
                f"{eng['wall_s']:.1f}  (planner "
                f"{eng['planner_phase_s']:.1f}, instances "
                f"{eng['instance_phase_s']:.1f})"
            ),
        ),
        ("instances/min", f"{result['instances_per_min']:.2f}"),
        ("engine req/s", f"{result['engine_requests_per_s']:.4f}"),
        ("raw req/s (same requests, same concurrency)", f"{result['raw_requests_per_s']:.4f}"),
        (
            "engine / raw",
            (
                f"{result['engine_over_raw']:.2f}  (per pair "
                f"{[round(x, 2) for x in result['per_pair_engine_over_raw']]})"
            ),
        ),
        (
            "engine instance-phase req/s / raw",
            (
                f"{result['engine_instance_phase_requests_per_s']:.4f} / "
                f"{result['raw_requests_per_s']:.4f} = {result['engine_instance_phase_over_raw']:.2f}"
            ),
        ),
        ("mean requests in flight engine / raw", in_flight_text),
        (
            "tokens/s (prompt+completion) engine / raw",
            f"{result['engine_tokens_per_s']:.1f} / {result['raw_tokens_per_s']:.1f}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"data_agents bench  server={url}  model={c['model'] if c['start_server'] else 'given'}  "
        f"concurrency={c['concurrency']}  plans={c['plans']}  tasks={c['tasks']}  "
        f"max_tokens={c['max_tokens']}  dialogue_steps={c['dialogue_steps']}"
    )
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    m = result["machine"]
    print(f"  failures: {eng['failures']}  raw statuses: {raw['statuses']}")
    print(
        f"  load average before {m['loadavg_before'][0]:.1f}, after {m['loadavg_after'][0]:.1f}"
        f" ({m['cpus']} CPUs)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--server_url")
    target.add_argument(
        "--start_server",
        action="store_true",
        help="start a CPU sglang-jax server on the random bench model, stop it after",
    )
    p.add_argument("--context_length", type=int, default=4096, help="with --start_server")
    p.add_argument(
        "--model",
        choices=("scripted", "random"),
        default="scripted",
        help="with --start_server: the scripted model (full-depth instances, see "
        "build_scripted_model) or the random one (every instance ends at its "
        "first request: invalid JSON)",
    )
    p.add_argument("--domain", default="outfitter")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--plans", type=int, default=4)
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--max_tokens", type=int, default=16)
    p.add_argument("--explore_steps", type=int, default=3)
    p.add_argument("--dialogue_steps", type=int, default=6)
    p.add_argument(
        "--repeats", type=int, default=2, help="engine/raw pairs, alternating which side goes first"
    )
    p.add_argument("--out", default="bench/results/data_agents_bench.json")
    args = p.parse_args()
    if args.server_url:
        result, url = run(args.server_url, args), args.server_url
    else:
        from tests.fixtures import sglang_server as fx

        model_dir = fx.build_tiny_qwen3(
            spec=BENCH_MODEL_SPEC,
            vocab_size=BENCH_VOCAB,
            corpus=bench_tokenizer_corpus(args.domain),
            name="bench-qwen3",
        )
        if args.model == "scripted":
            model_dir = build_scripted_model(model_dir)
        flags = bench_server_flags(args.concurrency, args.context_length)
        log_path = pathlib.Path(tempfile.mkdtemp(prefix="da_bench_server_")) / "server.log"
        print(f"starting sglang-jax on {model_dir} (log {log_path})", flush=True)
        t = time.perf_counter()
        proc, url = fx.start_server(model_dir, fx.ensure_sglang_venv(), log_path, flags)
        print(f"server healthy after {time.perf_counter() - t:.0f}s", flush=True)
        try:
            result = run(url, args)
        finally:
            fx.stop_process_group(proc)
        result["server"]["launch"] = fx.launch_command(pathlib.Path("python"), model_dir, 0, flags)
        result["server"]["model_config"] = json.loads((model_dir / "config.json").read_text())
    print_table(result, url)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
