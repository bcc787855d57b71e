"""The synthesis engine: rounds of plan → streams of instances → journal → report → reflection.

Layout under `out_dir`:
  journals/worker-III-of-NNN.jsonl   every instance, accepted or rejected (durable, resumable)
  prompts/vK/                        every prompt version (PromptStore)
  rounds/rRRR/plans.json             the round's plans and prompt version (written by worker 0)
  rounds/rRRR/done-wIII.json         worker III finished the round (its token usage)
  rounds/rRRR/reflection.json        the next version, rollback decision (worker 0)
  report.json, acceptance.png        per-round report (worker 0)

Sharding: stream s (plan s of a round) belongs to worker `s % num_workers`; workers meet at a
file barrier after each round because the next round's prompts depend on everyone's failures.
Resumption: every file above is written atomically and every step checks for its output first,
so a restart after SIGKILL skips journaled keys and written plans/reflections; LLM calls carry a
cache tag per (instance, step), so with the client's response cache resumed work is not re-paid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_agents.agents import (
    Sampling,
    StageFailure,
    make_plans,
    reflect,
    run_dialogue,
    synthesize_task,
    verify_task,
    verify_trajectory,
)
from data_agents.domains.base import Domain
from data_agents.journal import Journal, read_journals
from data_agents.llm.work_split import owns
from data_agents.prompts import BASE_VERSION, PromptStore
from data_agents.records import DialogueRecord
from data_agents.report import failures_of, summarize_round, write_report


@dataclasses.dataclass
class SynthesisConfig:
    """Science knobs of a generation run (bound from gin by `launch/generate_data.py`)."""

    num_rounds: int = 2
    plans_per_round: int = 8
    tasks_per_plan: int = 2
    max_explore_steps: int = 8
    max_dialogue_steps: int = 30
    max_concurrency: int = 16  # instances in flight per worker
    use_task_judge: bool = True
    use_trajectory_judge: bool = True
    temperature: float = 0.8  # planner, synthesiser, assistant, user simulator
    judge_temperature: float = 0.0  # verifiers and reflection
    max_tokens: int = 1024
    judge_max_tokens: int = 512
    barrier_timeout_s: float = 6 * 3600.0
    poll_s: float = 1.0

    def __post_init__(self):
        for name in (
            "num_rounds",
            "plans_per_round",
            "tasks_per_plan",
            "max_explore_steps",
            "max_concurrency",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"SynthesisConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_dialogue_steps < 2:
            raise ValueError(
                f"SynthesisConfig.max_dialogue_steps must be >= 2, got {self.max_dialogue_steps}"
            )

    @property
    def creative(self) -> Sampling:
        return Sampling(self.temperature, self.max_tokens)

    @property
    def judging(self) -> Sampling:
        return Sampling(self.judge_temperature, self.judge_max_tokens)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def instance_key(round_index: int, stream: int, task_index: int) -> str:
    return f"r{round_index:03d}/s{stream:04d}/t{task_index:03d}"


class SynthesisEngine:
    """One worker of a generation run. `await engine.run()` returns the final report (worker 0)
    or this worker's counts (others)."""

    def __init__(
        self,
        llm: Any,
        domain: Domain,
        out_dir: str | os.PathLike,
        config: SynthesisConfig | None = None,
        *,
        domain_name: str | None = None,
        worker_index: int = 0,
        num_workers: int = 1,
        model_name: str | None = None,
        on_record: Callable[[DialogueRecord], None] | None = None,
    ):
        owns(0, worker_index, num_workers)  # validates the pair
        self.llm, self.domain, self.config = llm, domain, config or SynthesisConfig()
        self.domain_name = domain_name or domain.name
        self.out = Path(out_dir)
        self.worker_index, self.num_workers = worker_index, num_workers
        self.leader = worker_index == 0
        self.model_name = model_name
        self.on_record = on_record
        self.store = PromptStore(self.out / "prompts")
        self.journal_path = (
            self.out / "journals" / f"worker-{worker_index:03d}-of-{num_workers:03d}.jsonl"
        )
        self.counts = {"accepted": 0, "rejected": 0, "skipped": 0}

    # ----------------------------------------------------------------------------- files
    def _round_dir(self, r: int) -> Path:
        return self.out / "rounds" / f"r{r:03d}"

    async def _wait_for(self, paths: list[Path], what: str) -> None:
        deadline = time.monotonic() + self.config.barrier_timeout_s
        while not all(p.exists() for p in paths):
            if time.monotonic() > deadline:
                missing = [str(p) for p in paths if not p.exists()]
                raise TimeoutError(
                    f"waited {self.config.barrier_timeout_s:g}s for {what}: missing {missing}"
                )
            await asyncio.sleep(self.config.poll_s)

    def _usage(self) -> dict[str, int]:
        u = getattr(self.llm, "usage", None)
        if u is None:
            return {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
        return {
            "requests": u.requests,
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
        }

    # ----------------------------------------------------------------------------- rounds
    async def _plans(self, r: int) -> dict[str, Any]:
        path = self._round_dir(r) / "plans.json"
        if not path.exists() and self.leader:
            version = (
                BASE_VERSION
                if r == 0
                else _read_json(self._round_dir(r - 1) / "reflection.json")["next_version"]
            )
            made = await make_plans(
                self.llm,
                self.domain,
                self.store.get(version),
                self.config.plans_per_round,
                sampling=self.config.creative,
                cache_tag=f"plan/r{r:03d}",
            )
            _write_json(path, {"round": r, "prompt_version": version, **made})
        await self._wait_for([path], f"round {r} plans from worker 0")
        return _read_json(path)

    async def _instance(self, r: int, s: int, t: int, plan: dict, version: str) -> DialogueRecord:
        key, cfg = instance_key(r, s, t), self.config
        prompts = self.store.get(version)
        task_id = f"{self.domain_name.replace(':', '_')}_{key.replace('/', '_')}"
        env_tools = self.domain.make_env().tools_schema("assistant")
        task = rollout = result = None
        facts: dict[str, Any] = {}
        failure = None
        synth_calls = 0
        try:
            synth = await synthesize_task(
                self.llm,
                self.domain,
                plan,
                prompts,
                task_id=task_id,
                sampling=cfg.creative,
                max_steps=cfg.max_explore_steps,
                cache_tag=f"{key}/synth",
            )
            task, synth_calls = synth.task, synth.tool_calls
            facts = await verify_task(
                self.llm,
                self.domain,
                task,
                prompts,
                sampling=cfg.judging,
                cache_tag=f"{key}/task_verify",
                use_judge=cfg.use_task_judge,
            )
            rollout = await run_dialogue(
                self.llm,
                self.domain,
                task,
                prompts,
                assistant_sampling=cfg.creative,
                user_sampling=cfg.creative,
                max_steps=cfg.max_dialogue_steps,
                cache_tag=f"{key}/rollout",
            )
            result = await verify_trajectory(
                self.llm,
                self.domain,
                task,
                rollout,
                prompts,
                sampling=cfg.judging,
                cache_tag=f"{key}/trajectory_verify",
                use_judge=cfg.use_trajectory_judge,
            )
        except StageFailure as f:
            failure = f.to_json()
        return DialogueRecord(
            key=key,
            status="rejected" if failure else "accepted",
            domain=self.domain_name,
            task=task.to_json() if task is not None else {},
            tools=env_tools,
            policy=self.domain.policy,
            messages=rollout.messages if rollout else [],
            verdict=result.verdict.to_json() if result else None,
            checker_source=task.checker_source if task is not None else None,
            failure=failure,
            provenance={
                "backend": "llm",
                "round": r,
                "stream": s,
                "task_index": t,
                "plan": plan,
                "prompt_version": version,
                "worker": self.worker_index,
                "model": self.model_name,
                "task_facts": facts,
                "synth_tool_calls": synth_calls,
                "termination": rollout.termination if rollout else None,
                "judge": result.judge if result else None,
            },
            user_tools=rollout.user_tools if rollout else [],
        )

    async def _run_round(self, r: int, journal: Journal) -> None:
        plans = await self._plans(r)
        version = plans["prompt_version"]
        todo = [
            (s, t)
            for s in range(len(plans["plans"]))
            if owns(s, self.worker_index, self.num_workers)
            for t in range(self.config.tasks_per_plan)
        ]
        gate = asyncio.Semaphore(self.config.max_concurrency)
        usage_before = self._usage()

        async def one(s: int, t: int) -> None:
            if instance_key(r, s, t) in journal:
                self.counts["skipped"] += 1
                return
            async with gate:
                record = await self._instance(r, s, t, plans["plans"][s], version)
            journal.append(record)
            self.counts[record.status] += 1
            if self.on_record:
                self.on_record(record)

        async with asyncio.TaskGroup() as group:  # one failure (server gone) cancels the rest
            for s, t in todo:
                group.create_task(one(s, t))
        done = self._round_dir(r) / f"done-w{self.worker_index:03d}.json"
        if not done.exists():
            after = self._usage()
            _write_json(done, {k: after[k] - usage_before[k] for k in after})

    def _round_summaries(self, upto: int) -> list[dict[str, Any]]:
        journals = sorted((self.out / "journals").glob("*.jsonl"))
        by_round: dict[int, list[DialogueRecord]] = {}
        for rec in read_journals(journals):
            by_round.setdefault(int(rec.provenance.get("round", 0)), []).append(rec)
        out = []
        for r in range(upto + 1):
            rd = self._round_dir(r)
            tokens: dict[str, int] = {}
            for marker in rd.glob("done-w*.json"):
                for k, v in _read_json(marker).items():
                    tokens[k] = tokens.get(k, 0) + int(v)
            extra: dict[str, Any] = {
                "prompt_version": _read_json(rd / "plans.json")["prompt_version"]
            }
            if (rd / "reflection.json").exists():
                refl = _read_json(rd / "reflection.json")
                extra.update(next_version=refl["next_version"], rolled_back=refl["rolled_back"])
            summary = summarize_round(by_round.get(r, []), r, tokens, **extra)
            summary["_records"] = by_round.get(r, [])
            out.append(summary)
        return out

    async def _close_round(self, r: int) -> None:
        """Worker 0: wait for all workers, reflect (unless last round), write the report."""
        markers = [self._round_dir(r) / f"done-w{w:03d}.json" for w in range(self.num_workers)]
        await self._wait_for(markers, f"all {self.num_workers} workers to finish round {r}")
        summaries = self._round_summaries(r)
        path = self._round_dir(r) / "reflection.json"
        if r + 1 < self.config.num_rounds and not path.exists():
            current = summaries[r]
            earlier = summaries[:r]
            best = max(earlier, key=lambda s: s["acceptance_rate"], default=None)
            rolled_back = best is not None and current["acceptance_rate"] < best["acceptance_rate"]
            parent = self.store.get(
                best["prompt_version"] if rolled_back else current["prompt_version"]
            )
            version, log = await reflect(
                self.llm,
                self.store,
                parent,
                domain_name=self.domain_name,
                round_index=r,
                accepted=current["accepted"],
                total=current["total"],
                failures=failures_of(current["_records"]),
                sampling=self.config.judging,
                cache_tag=f"reflection/r{r:03d}",
            )
            _write_json(
                path,
                {
                    "round": r,
                    "next_version": version.name,
                    "rolled_back": rolled_back,
                    "parent": parent.name,
                    "log": log,
                },
            )
            summaries = self._round_summaries(r)
        rounds = [{k: v for k, v in s.items() if k != "_records"} for s in summaries]
        write_report(
            self.out,
            rounds,
            domain=self.domain_name,
            num_workers=self.num_workers,
            prompt_versions=self.store.versions(),
        )

    async def run(self) -> dict[str, Any]:
        with Journal(self.journal_path) as journal:
            for r in range(self.config.num_rounds):
                await self._run_round(r, journal)
                if self.leader:
                    await self._close_round(r)
        if self.leader:
            return {**_read_json(self.out / "report.json"), "worker_counts": dict(self.counts)}
        return {"worker_counts": dict(self.counts)}
