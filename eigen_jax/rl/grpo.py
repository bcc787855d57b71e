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
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx

import gin
from eigen_jax import models, multihost, paths
from eigen_jax import sharding as shd
from eigen_jax.chat.template import ChatTemplate
from eigen_jax.rl import advantages as advantages_lib
from eigen_jax.rl.batching import (
    batch_shape,
    cheapest_train_batch,
    make_train_batch,
    pad_batch,
)
from eigen_jax.rl.episode import Episode
from eigen_jax.rl import multiprocess as mproc
from eigen_jax.rl.grpo_step import make_grpo_loss, make_logprob_fn, summarise
from eigen_jax.rl.rollout import EpisodeJob, RolloutConfig, RolloutWorker
from eigen_jax.rl.user_sim import UserSimulator, make_user_simulator
from eigen_jax.sampling import Engine
from eigen_jax.sampling.shapes import ShapePlanner, token_cost_of
from eigen_jax.train import state as state_lib
from eigen_jax.train.checkpoint import (
    Checkpointer,
    PreemptionGuard,
    check_counts,
    save_or_stop,
)
from eigen_jax.train.metrics import MetricsWriter
from eigen_jax.train.model_init import with_adapters
from eigen_jax.train.optimizer import make_optimizer, make_schedule
from eigen_jax.train.sft import export_pretrained, to_global_batch, write_result


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


def collect_groups(worker: RolloutWorker, stream: TaskStream, num_groups: int, group_size: int,
                   *, dynamic_filtering: bool = True, max_extra_rounds: int = 4,
                   seed: int = 0) -> tuple[list[list[Episode]], dict[str, float]]:
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
        for k, v in (worker.timings.items() if jobs else ()):
            timings[k] += v
        played += episodes
        for g in range(len(mine)):
            group = episodes[g * group_size:(g + 1) * group_size]
            rewards = np.array([[e.reward for e in group]])
            if not dynamic_filtering or bool(advantages_lib.informative_groups(rewards)[0]):
                kept.append(group)
        total_kept = mproc.global_count(len(kept))
        rounds += 1
    every = mproc.episode_summaries(played, group_size)
    stats = {"reward_mean": float(np.mean(every["reward"])),
             "informative_group_fraction": float(np.mean(every["informative"])),
             "extra_rollout_rounds": float(rounds - 1), "groups_kept": float(total_kept),
             "kept_reward_mean": _kept_reward_mean(kept),
             "episode_length": float(np.mean(every["length"])),
             "episode_turns": float(np.mean(every["turns"])),
             "episodes": float(len(every["reward"])), **timings}
    for reason in ("max_steps", "max_errors", "max_context", "turn_truncated"):
        stats[f"finish_{reason}"] = float(np.mean([f == reason for f in every["finish"]]))
    return kept, stats


def _kept_reward_mean(kept: list[list[Episode]]) -> float:
    """Mean reward over every process's kept episodes (NaN when none was kept)."""
    parts = multihost.allgather_json([e.reward for g in kept for e in g])
    rewards = [r for part in parts for r in part]
    return float(np.mean(rewards)) if rewards else float("nan")


@gin.configurable(denylist=["workdir"])
def run_grpo(workdir: str, policy_hf_dir: str = gin.REQUIRED, tokenizer_dir: str | None = None,
             domain: Any = "outfitter", user: str | UserSimulator = "reference",
             user_hf_dir: str | None = None, user_urls: str | Sequence[str] | None = None,
             train_split: str = "train", num_steps: int = 50, tasks_per_step: int = 8,
             group_size: int = 8, advantage: str = "grpo", loss: str = "grpo",
             dynamic_filtering: bool = True, max_extra_rounds: int = 4, eps_low: float = 0.4,
             eps_high: float = 0.4, is_cap: float | None = 5.0, kl_coef: float = 0.0,
             ppo_epochs: int = 1, layout: str = "trajectory", learning_rate: float = 1e-5,
             max_len: int = 4096, num_slots: int = 64, max_new_tokens: int = 512,
             temperature: float = 1.0, max_episode_steps: int = 200, max_tool_errors: int = 10,
             mesh_shape: Sequence[int] = (1, -1, 1), grad_accum_steps: int = 1,
             steps_per_sync: int = 8, log_entropy: bool = True, checkpoint_every: int = 10,
             keep_checkpoints: int = 2, seed: int = 0, export_hf: bool = True, log_every: int = 1,
             checker: Any = None, shape_slack: float = 4.0, max_prefill_len: int = 2048,
             share_prefix: bool = True, router_aux_loss_coef: float = 0.0,
             save_episodes: bool = False, lora: Any = None, init_adapter_dir: str | None = None,
             export_merged: bool = True) -> dict[str, Any]:
    """Train the policy with GRPO; returns {"steps", "reward_curve" [(step, mean reward of the
    step's rollouts)], "train_reward_curve", "skipped_steps", "learner_updates", "seconds",
    "hf_dir"}.

    `domain`: a registry name or a `Domain`; `user`: "reference" | "model" (in-process, from
    `user_hf_dir`) | "served" (at `user_urls`) or a `UserSimulator`; `checker`: defaults to
    `data_agents.checkers.check`. Everything else is a knob of the recipe (defaults: the paper's).
    `shape_slack`: the sampler and learner may run a call on a compiled shape costing at most this
    factor more than its exact bucket (`sampling.shapes`). `max_prefill_len`: the policy engine's
    prefill chunk. `share_prefix`: the learner may run each group's common prompt once (exact;
    `rl.batching.cheapest_train_batch`), with `grad_accum_steps == 1` and one process only.
    `router_aux_loss_coef`: an MoE policy's load-balancing loss weight (HF's definition; the paper
    states none, released Qwen3-MoE configs carry 0.001). `save_episodes`: pickle each process's
    kept groups per step under `workdir/episodes`. `lora`, `init_adapter_dir`, `export_merged`:
    LoRA on the frozen policy as in `run_sft`; the sampler runs base + adapters (new adapters
    in place after each update, the base shared with the learner: no second copy) and the KL
    reference is the base itself.
    """
    check_counts("run_grpo", num_steps=(num_steps, 1), num_slots=(num_slots, 1),
                 max_new_tokens=(max_new_tokens, 1), max_len=(max_len, 2),
                 ppo_epochs=(ppo_epochs, 1), tasks_per_step=(tasks_per_step, 1),
                 group_size=(group_size, 2))  # a group baseline needs two samples
    workdir = paths.resolve(workdir)
    mesh = shd.make_mesh(mesh_shape)
    sample_mesh = mproc.rollout_mesh(mesh)  # this process's devices when there are several
    chat = ChatTemplate.from_pretrained(tokenizer_dir or policy_hf_dir)
    model = with_adapters(models.from_pretrained(policy_hf_dir, mesh=mesh)[0], mesh, lora,
                          init_adapter_dir)
    config = model.config
    if config.vocab_size != len(chat.tokenizer):
        raise ValueError(f"policy vocab {config.vocab_size} != tokenizer {len(chat.tokenizer)}")
    engine = Engine(mproc.local_model(model, sample_mesh), num_slots, max_len, sample_mesh,
                    steps_per_sync=steps_per_sync,
                    max_prefill_len=min(max_len, max_prefill_len), shape_slack=shape_slack)
    state, learner = _make_learner(
        model, config, mesh, num_steps, learning_rate, grad_accum_steps, share_prefix,
        make_grpo_loss(loss, with_entropy=log_entropy, temperature=temperature or 1.0,
                       eps_low=eps_low, eps_high=eps_high, is_cap=is_cap, kl_coef=kl_coef,
                       router_aux_loss_coef=router_aux_loss_coef),
        advantage=advantage, layout=layout, max_len=max_len, ppo_epochs=ppo_epochs,
        kl_coef=kl_coef, temperature=temperature or 1.0, shape_slack=shape_slack)
    domain = _load_domain(domain)
    worker = RolloutWorker(engine, chat, domain, _user(user, user_hf_dir, user_urls, sample_mesh),
                           RolloutConfig(max_steps=max_episode_steps, max_errors=max_tool_errors,
                                         max_new_tokens=max_new_tokens, temperature=temperature,
                                         seed=seed), checker=checker)
    stream = TaskStream(domain.tasks(train_split), seed)
    ckpt = Checkpointer(workdir / "checkpoints", keep_checkpoints, checkpoint_every)
    state, progress = _Progress.resume(ckpt, state, stream, workdir)
    mproc.sync_engine_params(engine, learner.graphdef, state.params, learner.rest)
    writer = MetricsWriter(workdir / "tb", prefix="grpo/", console_every=log_every)
    with PreemptionGuard() as guard:
        for step in range(progress.step, num_steps):
            groups, stats = _timed_rollouts(worker, stream, tasks_per_step, group_size,
                                            dynamic_filtering, max_extra_rounds, seed=step)
            if save_episodes:
                _save_episodes(workdir, step + 1, groups)
            state, metrics = learner.step(state, groups, stats, engine, progress, step + 1)
            writer.write(step + 1, metrics)
            if save_or_stop(ckpt, guard, step + 1, num_steps, state,
                            lambda: progress.data_state(stream)):
                break
    ckpt.close()
    writer.close()
    result = progress.result(learner_updates=int(state.step))
    if export_hf and progress.step >= num_steps:
        result.update(learner.export(state, config, workdir / "hf",
                                     str(tokenizer_dir or policy_hf_dir), export_merged))
    return write_result(workdir, result)


def _timed_rollouts(worker, stream, tasks_per_step: int, group_size: int,
                    dynamic_filtering: bool, max_extra_rounds: int, seed: int):
    """`collect_groups`, its seconds added to the statistics as `rollout_s`."""
    t0 = time.perf_counter()
    groups, stats = collect_groups(worker, stream, tasks_per_step, group_size,
                                   dynamic_filtering=dynamic_filtering,
                                   max_extra_rounds=max_extra_rounds, seed=seed)
    return groups, dict(stats, rollout_s=time.perf_counter() - t0)


def _user(user: str | UserSimulator, hf_dir: str | None, urls, mesh) -> UserSimulator:
    if not isinstance(user, str):
        return user
    return make_user_simulator(user, hf_dir=hf_dir, urls=urls, mesh=mesh)


def _load_domain(domain: Any):
    """A registry name or a `Domain`."""
    if not isinstance(domain, str):
        return domain
    from data_agents import domains as domains_lib

    return domains_lib.load(domain)


@dataclasses.dataclass
class _Progress:
    """What the run has done so far (it travels in the checkpoint): the last finished step, the
    reward curves, the skipped steps and the seconds of the run's earlier parts."""

    step: int = 0
    curve: list = dataclasses.field(default_factory=list)
    train_curve: list = dataclasses.field(default_factory=list)
    skipped: int = 0
    seconds_before: float = 0.0
    started: float = dataclasses.field(default_factory=time.perf_counter)  # this part's start

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    @classmethod
    def resume(cls, ckpt: Checkpointer, state, stream: TaskStream, workdir):
        if ckpt.latest_step() is None:
            return state, cls()
        state, data = ckpt.restore(state)
        stream.set_state(data["tasks"])
        logging.info("resumed %s from step %d", workdir, int(data["step"]))
        return state, cls(int(data["step"]), data.get("curve", []), data.get("train_curve", []),
                          int(data.get("skipped", 0)), float(data.get("seconds", 0.0)))

    def data_state(self, stream: TaskStream) -> dict[str, Any]:
        return {"tasks": stream.get_state(), "step": self.step, "skipped": self.skipped,
                "curve": self.curve, "train_curve": self.train_curve, "seconds": self.seconds()}

    def result(self, learner_updates: int) -> dict[str, Any]:
        return {"steps": self.step, "reward_curve": self.curve,
                "train_reward_curve": self.train_curve, "skipped_steps": self.skipped,
                "learner_updates": learner_updates, "seconds": self.seconds()}


@dataclasses.dataclass
class _Learner:
    """The learner side of a GRPO step: advantages → batch → optimiser passes → the sampler's
    weights (`_update` holds the batching)."""

    graphdef: Any
    rest: Any
    step_fn: Any
    logprob_fn: Any
    ref_params: Any
    batch_shapes: ShapePlanner
    adv_fn: Any
    layout: str
    max_len: int
    row_multiple: int
    mesh: Any
    ppo_epochs: int
    token_cost: float | None

    def step(self, state, groups, stats, engine, progress: _Progress, done: int):
        """Train on a step's kept groups (if any), record it in `progress`; (state, metrics)."""
        progress.step = done
        progress.curve.append((done, stats["reward_mean"]))
        metrics: dict[str, float] = dict(stats)
        kept_reward = metrics.pop("kept_reward_mean")
        if stats["groups_kept"]:  # the same on every process
            t0 = time.perf_counter()
            state, update_metrics = _update(state, groups, self.adv_fn, self.layout,
                                            self.max_len, self.row_multiple, self.mesh,
                                            self.logprob_fn, self.ref_params, self.ppo_epochs,
                                            self.step_fn, self.batch_shapes, self.token_cost)
            metrics.update(update_metrics)
            mproc.sync_engine_params(engine, self.graphdef, state.params, self.rest)
            metrics["update_s"] = time.perf_counter() - t0
            progress.train_curve.append((done, kept_reward))
        else:
            progress.skipped += 1
            logging.warning("step %d: no informative group; no update", done)
        metrics["learner_updates"] = float(int(state.step))
        return state, metrics

    def export(self, state, config, hf_dir, tokenizer_dir: str, merged: bool = True) -> dict:
        return export_pretrained(nnx.merge(self.graphdef, state.params, self.rest), config,
                                 hf_dir, tokenizer_dir, merged=merged)


def _make_learner(model, config, mesh, num_steps: int, learning_rate: float,
                  grad_accum_steps: int, share_prefix: bool, loss_fn, *, advantage: str,
                  layout: str, max_len: int, ppo_epochs: int, kl_coef: float,
                  temperature: float, shape_slack: float):
    """The train state (a copy of the policy's weights: the train step donates its buffers,
    the sampler keeps its own) and the `_Learner` around the jitted train step."""
    if share_prefix and (grad_accum_steps > 1 or jax.process_count() > 1):
        # Rows index a prefix table that micro-batches and process-local batches would split.
        logging.info("share_prefix is off: it needs grad_accum_steps == 1 and one process")
        share_prefix = False
    tx = make_optimizer(make_schedule(learning_rate=learning_rate, schedule="constant",
                                      warmup_steps=0, total_steps=num_steps))
    graphdef, params, frozen, rest = state_lib.split_trainable(model)  # LoRA: base frozen
    copy = lambda tree: jax.tree.map(lambda x: x.copy(), tree)  # noqa: E731
    state = state_lib.init_train_state(copy(params), tx, mesh)
    step_fn = state_lib.make_train_step(graphdef, rest, tx, loss_fn, mesh=mesh,
                                        state_sharding=state_lib.state_shardings(state),
                                        grad_accum_steps=grad_accum_steps, frozen=frozen)
    dp = shd._mesh_axis_sizes(mesh)
    logprobs = lambda adapters=True: state_lib.MeshBound(make_logprob_fn(  # noqa: E731
        graphdef, rest, temperature=temperature, frozen=frozen, adapters=adapters), mesh)
    # The KL reference: a copy of the initial weights, or a LoRA policy's base (adapters off).
    ref = None if kl_coef <= 0 else copy(params) if frozen is None else logprobs(False)
    return state, _Learner(
        graphdef, rest if frozen is None else nnx.merge_state(frozen, rest), step_fn,
        logprobs(), ref,
        ShapePlanner(("grpo-learner", id(step_fn)), token_cost=0.0, slack=shape_slack),
        advantages_lib.get(advantage), layout, max_len,
        dp.get("data", 1) * dp.get("fsdp", 1) * grad_accum_steps, mesh, ppo_epochs,
        token_cost_of(config) if share_prefix else None)  # the shared-prefix cost rule


def _save_episodes(workdir, step: int, groups: list[list[Episode]]) -> None:
    """This process's kept groups of a step (pickled): what its rows of the batch were built
    from, for inspection and for tests of the process split."""
    import pickle

    out = workdir / "episodes" / f"step_{step:05d}.process_{jax.process_index()}.pkl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pickle.dumps(groups))


def _update(state, groups, adv_fn, layout, max_len, row_multiple, mesh, logprob_fn, ref_params,
            ppo_epochs, step_fn, batch_shapes: ShapePlanner, token_cost: float | None = None):
    """Advantages → batch (packed, or with shared prefixes when `token_cost` is given and that is
    cheaper; padded to an already compiled shape when that is cheap) → π_old (and reference)
    log-probs → μ optimiser passes; returns (new state, metrics)."""
    episodes = [e for g in groups for e in g]
    rows_multiple = mproc.local_row_multiple(row_multiple)
    if not episodes:  # another process kept groups this step, this one none: padding rows
        host = mproc.empty_batch()
    elif token_cost is None:
        rewards = np.array([[e.reward for e in g] for g in groups], np.float32)
        adv = np.asarray(adv_fn(rewards)).reshape(-1)
        host = make_train_batch(episodes, adv, layout, max_len=max_len,
                                row_multiple=rows_multiple)
    else:
        rewards = np.array([[e.reward for e in g] for g in groups], np.float32)
        adv = np.asarray(adv_fn(rewards)).reshape(-1)
        host = cheapest_train_batch(episodes, adv, layout, token_cost, max_len=max_len,
                                    row_multiple=rows_multiple)
    # cost ~ tokens the model runs: rows x length (+ prefixes x prefix length)
    cost = lambda s: s[0] * s[1] + (s[3] * s[4] if len(s) > 3 else 0)  # noqa: E731
    kind = ("batch", "prefix_tokens" in host)
    shape = batch_shape(host)
    if jax.process_count() > 1:  # one local shape on every process (a global array's rows)
        shape = mproc.agreed_shape(shape)
        shape = (-(-shape[0] // rows_multiple) * rows_multiple,) + shape[1:]
    host = pad_batch(host, *batch_shapes.cover(kind, shape, cost))
    batch = to_global_batch(host, mesh)
    if ppo_epochs > 1:  # later passes need the rollout-time policy's log-probs, frozen
        batch["old_logprobs"] = logprob_fn(state.params, batch)
    if ref_params is not None:
        batch["ref_logprobs"] = (ref_params(state.params, batch) if callable(ref_params)
                                 else logprob_fn(ref_params, batch))
    for _ in range(ppo_epochs):
        state, sums = step_fn(state, batch)
    out = summarise(jax.device_get(sums))
    out["batch_tokens"] = float(mproc.global_count(
        host["tokens"].size + np.size(host.get("prefix_tokens", ()))))
    out["train_tokens"] = float(mproc.global_count((host["segment_ids"] > 0).sum()))
    if "prefix_lengths" in host:  # run once per group instead of once per sample
        out["shared_prefix_tokens"] = float(host["prefix_lengths"].sum())
    return state, out
