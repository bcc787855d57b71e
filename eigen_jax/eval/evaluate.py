"""pass^k evaluation of an eigen-jax checkpoint (in-process, same rollout engine as GRPO).

Every (task, trial) is one episode of `RolloutWorker`; finished trials are logged durably as they
complete, so a crashed evaluation resumes without re-running them. Served agents (any
OpenAI-compatible URL) are evaluated by `launch/eval.py` through the data agents' rollout and
scored into the same `TrialLog`/`summarize`.

Multi-process: the (task, trial) jobs are dealt round-robin to the processes; each plays its own on
its own devices (a full copy of the weights) into its own durable log, and process 0 gathers every
record into `trials.jsonl` and writes the summary. Episode seeds depend on the job, not on which
process or chunk plays it, so the split does not change what is sampled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gin
import jax
import tqdm
from absl import logging

from eigen_jax import models, multihost, scopes
from eigen_jax import sharding as shd
from eigen_jax.chat.template import ChatTemplate
from eigen_jax.eval.results import TrialLog, summarize, write_results
from eigen_jax.eval.tau2_results import write_tau2_results
from eigen_jax.rl.rollout import RolloutConfig, RolloutWorker, make_jobs
from eigen_jax.rl.task_source import TaskSource
from eigen_jax.rl.user_sim import UserSimulator, make_user_simulator
from eigen_jax.sampling.config import SamplerConfig


def trial_record(ep, trial: int) -> dict[str, Any]:
    return {
        "task_id": ep.task_id,
        "trial": trial,
        "reward": ep.reward,
        "finish_reason": ep.finish_reason,
        "turns": ep.num_turns,
        "tokens": int(ep.length),
        "tool_errors": ep.num_tool_errors,
        "reason": ep.verdict.reason if ep.verdict is not None else None,
    }


def checkpoint_digest(hf_dir: str) -> str:
    """sha256 of an HF checkpoint's config and weights: what makes two evaluations the same."""
    h = hashlib.sha256()
    for path in sorted(Path(hf_dir).glob("*.safetensors")) + [Path(hf_dir) / "config.json"]:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
    return h.hexdigest()


def user_identity(user: UserSimulator) -> dict[str, Any]:
    """Which user simulator played the episodes (its class, weights or endpoints, sampling)."""
    out: dict[str, Any] = {"kind": type(user).__name__}
    if getattr(user, "hf_dir", None):
        out["weights_sha256"] = checkpoint_digest(user.hf_dir)
    for k in ("urls", "model", "params", "seed"):
        if hasattr(user, k):
            out[k] = str(getattr(user, k))
    return out


def run_trials(
    worker: RolloutWorker,
    tasks: Sequence[Any],
    num_trials: int,
    log: TrialLog,
    chunk_episodes: int = 64,
    seed: int = 0,
    trajectories: TrialLog | None = None,
) -> None:
    """Play this process's (task, trial) jobs not yet in `log`, `chunk_episodes` at a time,
    logging each chunk. The seed is the same for every chunk: each episode's sampling seed comes
    from its job (`rollout`), so neither chunking nor the process split changes it."""
    jobs = [
        j
        for j in multihost.split_evenly(make_jobs(tasks, num_trials))
        if not log.done(j.task.id, j.sample_index)
    ]
    # A progress bar (total, rate, ETA) on an interactive console, a log line per chunk otherwise.
    bar = tqdm.tqdm(
        total=len(jobs),
        desc="eval",
        unit="episode",
        dynamic_ncols=True,
        disable=not (multihost.is_primary() and sys.stderr.isatty()),
    )
    with bar:
        for start in range(0, len(jobs), chunk_episodes):
            chunk = jobs[start : start + chunk_episodes]
            episodes = worker.run(chunk, seed=seed)
            if trajectories is not None:  # before the trial log: a logged trial has its transcript
                trajectories.add(
                    {"task_id": ep.task_id, "trial": job.sample_index, "messages": ep.messages}
                    for ep, job in zip(episodes, chunk)
                )
            log.add(trial_record(ep, job.sample_index) for ep, job in zip(episodes, chunk))
            bar.update(len(chunk))
            if bar.disable:
                logging.info("eval: %d/%d episodes", start + len(chunk), len(jobs))


@gin.configurable(denylist=["agent_hf_dir", "output_dir"])
def evaluate_checkpoint(
    agent_hf_dir: str,
    output_dir: str,
    domain: str = "outfitter",
    split: str = "test",
    num_trials: int = 1,
    max_tasks: int | None = None,
    user: UserSimulator | None = None,
    mesh_shape: Sequence[int] = (1, -1, 1),
    seed: int = 0,
    domain_kwargs: dict[str, Any] | None = None,
    name: str = "agent",
    sampler: SamplerConfig | None = None,
    rollout: RolloutConfig | None = None,
    task_source: TaskSource | None = None,
) -> dict[str, Any]:
    """Evaluate `agent_hf_dir` on `split` (of `task_source`: the domain's tasks by default);
    writes results.json + pass_k.png + tau2_results.json (tau2's Results schema, from
    trajectories.jsonl) under `output_dir`.

    `sampler` sizes the agent's engine and `rollout` sets the episode limits and sampling; both
    default to their gin-bound configs in the gin scope `eval` (unscoped bindings are GRPO's
    too), so the evaluation reuses GRPO's compiled programs and plays episodes as training did.
    `seed` offsets every episode's sampling seed.
    """
    from data_agents.domains import load

    if not Path(agent_hf_dir, "config.json").exists():
        raise FileNotFoundError(f"no HF checkpoint (config.json) in {agent_hf_dir}")
    dom = load(domain, **(domain_kwargs or {}))
    tasks = (task_source or TaskSource()).tasks(dom, split)[:max_tasks]
    # one process: the gin mesh; several: each samples on its own devices
    mesh = (
        shd.make_mesh(mesh_shape)
        if jax.process_count() == 1
        else shd.make_mesh((1, -1, 1), devices=jax.local_devices())
    )
    model, _ = models.from_pretrained(agent_hf_dir, mesh=mesh)
    chat = ChatTemplate.from_pretrained(agent_hf_dir)
    engine = (sampler or scopes.configured(SamplerConfig, scopes.EVAL)).engine(model, mesh)
    config = rollout or scopes.configured(RolloutConfig, scopes.EVAL)
    user = user or make_user_simulator(domain=dom)  # the domain's scripted user
    worker = RolloutWorker(engine, chat, dom, user, config)
    identity = {
        "weights_sha256": checkpoint_digest(agent_hf_dir),
        "domain": domain,
        "domain_kwargs": domain_kwargs,
        "split": split,
        "user": user_identity(user),
        "rollout": dataclasses.asdict(config),
    }
    count = jax.process_count()
    log_name = (
        "trials.jsonl" if count == 1 else f"trials.process_{jax.process_index()}_of_{count}.jsonl"
    )
    log = TrialLog(Path(output_dir) / log_name, identity=identity)
    trajectories = TrialLog(
        Path(output_dir) / log_name.replace("trials", "trajectories"), identity=identity
    )
    t0 = time.perf_counter()
    run_trials(worker, tasks, num_trials, log, seed=seed, trajectories=trajectories)
    records = [t for part in multihost.allgather_json(list(log.trials.values())) for t in part]
    seconds = round(time.perf_counter() - t0, 1)

    def summarise_all() -> dict[str, Any]:
        merged = log if count == 1 else TrialLog(Path(output_dir) / "trials.jsonl", identity)
        merged.add(t for t in records if not merged.done(t["task_id"], int(t["trial"])))
        result = summarize(
            merged,
            domain,
            num_trials,
            {
                "checkpoint": agent_hf_dir,
                "split": split,
                "name": name,
                "seconds": seconds,
                "processes": count,
            },
            task_ids=[t.id for t in tasks],
        )
        write_results(output_dir, name, result)
        write_tau2_results(
            output_dir,
            dom,
            tasks,
            result,
            limits=config.limits(),
            agent={"llm": agent_hf_dir},
            user=identity["user"],
            seed=seed,
        )
        return result

    return multihost.primary_first("evaluation", summarise_all)
