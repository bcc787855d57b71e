"""GRPO for multi-turn tool use (the paper's RL stage), read top to bottom.

mesh → policy (the agent-SFT checkpoint) → optimizer → sharded train state → sampling engine on
the same weights → user simulator (frozen) → restore the latest checkpoint (state + task cursor) →
loop: roll out G episodes per task, drop groups whose rewards are all equal and roll out more tasks
until B informative groups are in (bounded extra rounds), trajectory advantages broadcast to every
policy token, π_old log-probs recomputed by the learner, μ clipped-surrogate passes, new weights
into the engine in place → metrics, checkpoints; SIGTERM saves and exits → HF export
(`workdir/hf`) and `result.json` with the reward curve.

Multi-process: every process draws the same task order; each round's tasks are dealt round-robin
to the processes, each plays its own on its own devices (`rl.multiprocess`), the kept counts and
statistics are gathered, and the learner step takes every process's episodes as its rows of the
global batch (`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Sequence
from typing import Any

import gin
import jax
import numpy as np
from absl import logging

from eigen_jax import models, multihost, paths, scopes
from eigen_jax import sharding as shd
from eigen_jax.chat.template import ChatTemplate
from eigen_jax.rl import advantages as advantages_lib
from eigen_jax.rl import multiprocess as mproc
from eigen_jax.rl.config import GRPOConfig
from eigen_jax.rl.episode import FINISH_REASONS, Episode
from eigen_jax.rl.learner import GRPOLearner
from eigen_jax.rl.rollout import EpisodeJob, RolloutConfig, RolloutWorker
from eigen_jax.rl.task_source import TaskSource
from eigen_jax.rl.user_sim import UserSimulator, make_user_simulator
from eigen_jax.sampling.config import SamplerConfig
from eigen_jax.train.checkpoint import check_counts
from eigen_jax.train.loop import TrainLoop, export_pretrained
from eigen_jax.train.model_init import with_adapters

# One concise console line per step: reward, signal, how episodes ended, loss, where time went.
CONSOLE_KEYS = (
    "reward_mean",
    "informative_group_fraction",
    "groups_kept",
    "finish_max_errors",
    "finish_max_steps",
    "finish_max_context",
    "loss",
    "rollout_s",
    "update_s",
)


class TaskStream:
    """Endless reproducible task order: a fresh seeded permutation of the split every epoch.

    Its state (epoch, cursor) goes into the checkpoint, so a resumed run draws the same tasks.
    """

    def __init__(self, tasks: Sequence[Any], seed: int):
        if not tasks:
            raise ValueError("the task split is empty; GRPO needs training tasks")
        self.tasks, self.seed = list(tasks), seed
        self.epoch = self.cursor = 0

    def take(self, n: int) -> list[Any]:
        out = []
        while len(out) < n:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.tasks))
            out.append(self.tasks[order[self.cursor]])
            self.cursor += 1
            if self.cursor == len(self.tasks):
                self.epoch, self.cursor = self.epoch + 1, 0
        return out

    def get_state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def set_state(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


def collect_groups(
    worker: RolloutWorker,
    stream: TaskStream,
    num_groups: int,
    group_size: int,
    *,
    dynamic_filtering: bool = True,
    max_extra_rounds: int = 4,
    seed: int = 0,
) -> tuple[list[list[Episode]], dict[str, float]]:
    """Roll out until `num_groups` groups are kept (informative ones when filtering), or the extra
    rounds are spent; returns (this process's kept groups, rollout stats over every episode
    played by any process). Each round's tasks are the same on every process; each process plays
    its round-robin share (group ids are the global task index, so the sampling seeds are the
    ones a single process would use)."""
    kept: list[list[Episode]] = []
    played: list[Episode] = []
    timings = {"policy_env_s": 0.0, "user_s": 0.0, "reward_s": 0.0}
    rounds = total_kept = 0
    while total_kept < num_groups and rounds <= max_extra_rounds:
        tasks = stream.take(num_groups - total_kept)
        mine = mproc.my_task_indices(len(tasks))
        jobs = [EpisodeJob(tasks[i], i, k) for i in mine for k in range(group_size)]
        episodes = worker.run(jobs, seed=seed * 1009 + rounds) if jobs else []
        for k, v in worker.timings.items() if jobs else ():
            timings[k] += v
        played += episodes
        for g in range(len(mine)):
            group = episodes[g * group_size : (g + 1) * group_size]
            rewards = np.array([[e.reward for e in group]])
            if not dynamic_filtering or bool(advantages_lib.informative_groups(rewards)[0]):
                kept.append(group)
        total_kept = mproc.global_count(len(kept))
        rounds += 1
    every = mproc.episode_summaries(played, group_size)
    stats = {
        "reward_mean": float(np.mean(every["reward"])),
        "informative_group_fraction": float(np.mean(every["informative"])),
        "extra_rollout_rounds": float(rounds - 1),
        "groups_kept": float(total_kept),
        "kept_reward_mean": _kept_reward_mean(kept),
        "episode_length": float(np.mean(every["length"])),
        "episode_turns": float(np.mean(every["turns"])),
        "episodes": float(len(every["reward"])),
        **timings,
    }
    for reason in FINISH_REASONS:  # every way an episode ends, so the fractions sum to 1
        stats[f"finish_{reason}"] = float(np.mean([f == reason for f in every["finish"]]))
    return kept, stats


def _kept_reward_mean(kept: list[list[Episode]]) -> float:
    """Mean reward over every process's kept episodes (NaN when none was kept)."""
    parts = multihost.allgather_json([e.reward for g in kept for e in g])
    rewards = [r for part in parts for r in part]
    return float(np.mean(rewards)) if rewards else float("nan")


@gin.configurable(denylist=["workdir"])
def run_grpo(
    workdir: str,
    policy_hf_dir: str = gin.REQUIRED,
    tokenizer_dir: str | None = None,
    domain: Any = "outfitter",
    user: str | UserSimulator = "reference",
    user_hf_dir: str | None = None,
    user_urls: str | Sequence[str] | None = None,
    train_split: str = "train",
    num_steps: int = 50,
    algorithm: GRPOConfig | None = None,
    sampler: SamplerConfig | None = None,
    rollout: RolloutConfig | None = None,
    mesh_shape: Sequence[int] = (1, -1, 1),
    grad_accum_steps: int = 1,
    checkpoint_every: int = 10,
    keep_checkpoints: int = 2,
    seed: int = 0,
    export_hf: bool = True,
    log_every: int = 1,
    checker: Any = None,
    save_episodes: bool = False,
    task_source: TaskSource | None = None,
    lora: Any = None,
    init_adapter_dir: str | None = None,
    export_merged: bool = True,
) -> dict[str, Any]:
    """Train the policy with GRPO; returns {"steps", "reward_curve" [(step, mean reward of the
    step's rollouts)], "train_reward_curve", "skipped_steps", "learner_updates", "seconds",
    "hf_dir"}.

    `algorithm`, `sampler` (the policy's engine) and `rollout` (episode limits, sampling
    temperature) default to their gin-bound configs (the latter two in the gin scope `grpo`).
    `domain`: a registry name or a `Domain`; `user`: "reference" | "model" (in-process, from
    `user_hf_dir`, sized by the gin scope `user/SamplerConfig`) | "served" (at `user_urls`) or a
    `UserSimulator`; `checker`: defaults to `data_agents.checkers.check`. `seed`: the task
    order and the rollouts' sampling seeds. `save_episodes`: pickle each process's kept groups
    per step under `workdir/episodes`. `task_source`: the domain's `train_split` or a published
    dataset's synthesised tasks (`rl.task_source`). `lora`, `init_adapter_dir`, `export_merged`:
    LoRA on the frozen policy as in `run_sft`; the sampler runs base + adapters (new adapters in
    place after each update, the base shared with the learner: no second copy) and the KL
    reference is the base itself.
    """
    algorithm = algorithm or GRPOConfig()
    sampler = sampler or scopes.configured(SamplerConfig, scopes.GRPO)
    rollout = rollout or scopes.configured(RolloutConfig, scopes.GRPO)
    check_counts("run_grpo", num_steps=(num_steps, 1), grad_accum_steps=(grad_accum_steps, 1))
    mesh = shd.make_mesh(mesh_shape)
    sample_mesh = mproc.rollout_mesh(mesh)  # this process's devices when there are several
    chat = ChatTemplate.from_pretrained(tokenizer_dir or policy_hf_dir)
    model = with_adapters(
        models.from_pretrained(policy_hf_dir, mesh=mesh)[0], mesh, lora, init_adapter_dir
    )
    config = model.config
    if config.vocab_size != len(chat.tokenizer):
        raise ValueError(f"policy vocab {config.vocab_size} != tokenizer {len(chat.tokenizer)}")
    engine = sampler.engine(mproc.local_model(model, sample_mesh), sample_mesh)
    state, learner = GRPOLearner.create(
        model,
        config,
        mesh,
        algorithm,
        num_steps=num_steps,
        max_len=sampler.max_len,
        temperature=rollout.temperature,
        grad_accum_steps=grad_accum_steps,
        shape_slack=sampler.shape_slack,
    )
    domain = _load_domain(domain)
    worker = RolloutWorker(
        engine,
        chat,
        domain,
        _user(user, user_hf_dir, user_urls, sample_mesh, domain),
        rollout,
        checker=checker,
    )
    stream = TaskStream((task_source or TaskSource()).tasks(domain, train_split), seed)
    loop = TrainLoop(
        workdir,
        num_steps,
        metrics_prefix="grpo/",
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        log_every=log_every,
        console_keys=CONSOLE_KEYS,
    )
    state, saved = loop.restore(state)
    progress = _Progress.resume(saved, stream)
    learner.sync_sampler(engine, state)

    def step(i: int, state):
        groups, stats = _timed_rollouts(worker, stream, algorithm, seed=i)
        if save_episodes:
            _save_episodes(loop.workdir, i + 1, groups)
        _save_transcripts(loop.workdir, i + 1, groups)
        return progress.record(i + 1, state, groups, stats, learner, engine)

    state = loop.run(state, progress.step, step, lambda: progress.data_state(stream))
    export = functools.partial(
        export_pretrained,
        learner.model(state),
        config,
        tokenizer_dir=str(tokenizer_dir or policy_hf_dir),
        merged=export_merged,
    )
    return loop.finish(
        progress.result(learner_updates=int(state.step)),
        progress.step >= num_steps,
        export if export_hf else None,
    )


def _timed_rollouts(worker, stream, algorithm: GRPOConfig, seed: int):
    """`collect_groups`, its seconds added to the statistics as `rollout_s`."""
    t0 = time.perf_counter()
    groups, stats = collect_groups(
        worker,
        stream,
        algorithm.tasks_per_step,
        algorithm.group_size,
        dynamic_filtering=algorithm.dynamic_filtering,
        max_extra_rounds=algorithm.max_extra_rounds,
        seed=seed,
    )
    return groups, dict(stats, rollout_s=time.perf_counter() - t0)


def _user(user: str | UserSimulator, hf_dir: str | None, urls, mesh, domain) -> UserSimulator:
    """`user="reference"` is `domain`'s scripted user (`Domain.reference_user`)."""
    if not isinstance(user, str):
        return user
    return make_user_simulator(user, hf_dir=hf_dir, urls=urls, mesh=mesh, domain=domain)


def _load_domain(domain: Any):
    """A registry name or a `Domain`."""
    if not isinstance(domain, str):
        return domain
    from data_agents import domains as domains_lib

    return domains_lib.load(domain)


@dataclasses.dataclass
class _Progress:
    """What the run has done so far (it travels in the checkpoint): the last finished step, the
    reward curves and the steps skipped for want of an informative group."""

    step: int = 0
    curve: list = dataclasses.field(default_factory=list)
    train_curve: list = dataclasses.field(default_factory=list)
    skipped: int = 0

    @classmethod
    def resume(cls, saved: dict[str, Any] | None, stream: TaskStream) -> _Progress:
        if saved is None:
            return cls()
        stream.set_state(saved["tasks"])
        return cls(
            int(saved["step"]),
            saved.get("curve", []),
            saved.get("train_curve", []),
            int(saved.get("skipped", 0)),
        )

    def record(self, done: int, state, groups, stats, learner: GRPOLearner, engine):
        """Train on a step's kept groups (if any) and record the step; (state, metrics)."""
        self.step = done
        self.curve.append((done, stats["reward_mean"]))
        metrics: dict[str, float] = dict(stats)
        kept_reward = metrics.pop("kept_reward_mean")
        if stats["groups_kept"]:  # the same on every process
            state, update_metrics = learner.update(state, groups)
            learner.sync_sampler(engine, state)
            metrics.update(update_metrics)
            self.train_curve.append((done, kept_reward))
        else:
            self.skipped += 1
            logging.warning("step %d: no informative group; no update", done)
        metrics["learner_updates"] = float(int(state.step))
        return state, metrics

    def data_state(self, stream: TaskStream) -> dict[str, Any]:
        return {
            "tasks": stream.get_state(),
            "step": self.step,
            "skipped": self.skipped,
            "curve": self.curve,
            "train_curve": self.train_curve,
        }

    def result(self, learner_updates: int) -> dict[str, Any]:
        return {
            "steps": self.step,
            "reward_curve": self.curve,
            "train_reward_curve": self.train_curve,
            "skipped_steps": self.skipped,
            "learner_updates": learner_updates,
        }


def _save_episodes(workdir, step: int, groups: list[list[Episode]]) -> None:
    """This process's kept groups of a step (pickled): what its rows of the batch were built
    from, for inspection and for tests of the process split."""
    import pickle

    out = workdir / "episodes" / f"step_{step:05d}.process_{jax.process_index()}.pkl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pickle.dumps(groups))


def _save_transcripts(workdir, step: int, groups: list[list[Episode]], per_step: int = 2) -> None:
    """A sample of the step's rollouts (process 0: the first episode of its first `per_step`
    kept groups) appended to `workdir/transcripts.jsonl`, to read what the policy does."""
    if not multihost.is_primary() or not groups:
        return
    paths.append_text(
        workdir / "transcripts.jsonl",
        "".join(
            json.dumps({"step": step, **group[0].transcript()}, default=str) + "\n"
            for group in groups[:per_step]
        ),
    )
