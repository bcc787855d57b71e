"""The learner side of a GRPO step: kept groups → advantages → train batch → π_old (and
reference) log-probs → μ optimiser passes → the sampler's new weights.

Batches are packed (or, when cheaper, built with each group's shared prompt run once) and padded
to an already compiled shape when that costs little (`sampling.shapes.ShapePlanner`); with several
processes every process contributes its own episodes as its rows of the global batch.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import nnx

from eigen_jax import sharding as shd
from eigen_jax.rl import advantages as advantages_lib
from eigen_jax.rl import multiprocess as mproc
from eigen_jax.rl.config import GRPOConfig
from eigen_jax.rl.episode import Episode
from eigen_jax.rl.learner_fns import make_grpo_loss, make_logprob_fn, summarise
from eigen_jax.rl.train_batch import batch_shape, cheapest_train_batch, make_train_batch, pad_batch
from eigen_jax.sampling.shapes import ShapePlanner, token_cost_of
from eigen_jax.train import state as state_lib
from eigen_jax.train.optimizer import make_optimizer, make_schedule


def grpo_loss_fn(config: GRPOConfig, temperature: float):
    """The train step's loss for `config`, scoring tokens at the rollout's temperature."""
    return make_grpo_loss(
        config.loss,
        with_entropy=config.log_entropy,
        temperature=temperature or 1.0,
        eps_low=config.eps_low,
        eps_high=config.eps_high,
        is_cap=config.is_cap,
        kl_coef=config.kl_coef,
        router_aux_loss_coef=config.router_aux_loss_coef,
    )


@dataclasses.dataclass
class GRPOLearner:
    """The jitted train step and log-prob programs around one policy, and how to batch for them.

    Build with `GRPOLearner.create`, which also returns the train state."""

    config: GRPOConfig
    graphdef: Any
    rest: Any
    step_fn: Any
    logprob_fn: Any
    ref_params: Any  # the KL reference: initial params, or a LoRA base's log-prob fn, or None
    batch_shapes: ShapePlanner
    max_len: int
    row_multiple: int
    mesh: Any
    token_cost: float | None  # the shared-prefix cost rule; None: always pack

    @classmethod
    def create(
        cls,
        model,
        model_config,
        mesh,
        config: GRPOConfig,
        *,
        num_steps: int,
        max_len: int,
        temperature: float,
        grad_accum_steps: int = 1,
        shape_slack: float = 4.0,
    ):
        """(train state, learner). The train state holds a copy of the policy's weights: the
        train step donates its buffers, the sampler keeps its own."""
        share_prefix = config.share_prefix
        if share_prefix and (grad_accum_steps > 1 or jax.process_count() > 1):
            # Rows index a prefix table that micro-batches and process-local batches would split.
            logging.info("share_prefix is off: it needs grad_accum_steps == 1 and one process")
            share_prefix = False
        tx = make_optimizer(
            make_schedule(
                learning_rate=config.learning_rate,
                schedule="constant",
                warmup_steps=0,
                total_steps=num_steps,
            )
        )
        # LoRA: the adapters train, the base is a frozen argument shared with the sampler.
        graphdef, params, frozen, rest = state_lib.split_trainable(model)
        copy = lambda tree: jax.tree.map(lambda x: x.copy(), tree)  # noqa: E731
        state = state_lib.init_train_state(copy(params), tx, mesh)
        step_fn = state_lib.make_train_step(
            graphdef,
            rest,
            tx,
            grpo_loss_fn(config, temperature),
            mesh=mesh,
            state_sharding=state_lib.state_shardings(state),
            grad_accum_steps=grad_accum_steps,
            frozen=frozen,
        )
        logprobs = lambda adapters=True: state_lib.MeshBound(
            make_logprob_fn(  # noqa: E731
                graphdef, rest, temperature=temperature or 1.0, frozen=frozen, adapters=adapters
            ),
            mesh,
        )
        # The KL reference: a copy of the initial weights, or a LoRA policy's base (adapters off).
        ref = None if config.kl_coef <= 0 else copy(params) if frozen is None else logprobs(False)
        planner = ShapePlanner(("grpo-learner", id(step_fn)), token_cost=0.0, slack=shape_slack)
        return state, cls(
            config,
            graphdef,
            rest if frozen is None else nnx.merge_state(frozen, rest),
            step_fn,
            logprobs(),
            ref,
            planner,
            max_len,
            shd.data_parallel_size(mesh) * grad_accum_steps,
            mesh,
            token_cost_of(model_config) if share_prefix else None,
        )

    def update(self, state, groups: list[list[Episode]]) -> tuple[Any, dict[str, float]]:
        """Train on this process's kept groups (another process may have kept some when this
        one kept none: then it contributes padding rows); returns (new state, metrics)."""
        t0 = time.perf_counter()
        host = self._host_batch(groups)
        # cost ~ tokens the model runs: rows x length (+ prefixes x prefix length)
        cost = lambda s: s[0] * s[1] + (s[3] * s[4] if len(s) > 3 else 0)  # noqa: E731
        rows_multiple = mproc.local_row_multiple(self.row_multiple)
        shape = batch_shape(host)
        if jax.process_count() > 1:  # one local shape on every process (a global array's rows)
            shape = mproc.agreed_shape(shape)
            shape = (-(-shape[0] // rows_multiple) * rows_multiple,) + shape[1:]
        host = pad_batch(
            host, *self.batch_shapes.cover(("batch", "prefix_tokens" in host), shape, cost)
        )
        batch = shd.to_global_batch(host, self.mesh)
        if self.config.ppo_epochs > 1:  # later passes need the rollout policy's log-probs
            batch["old_logprobs"] = self.logprob_fn(state.params, batch)
        if callable(self.ref_params):  # a LoRA policy's base: the same program, adapters off
            batch["ref_logprobs"] = self.ref_params(state.params, batch)
        elif self.ref_params is not None:
            batch["ref_logprobs"] = self.logprob_fn(self.ref_params, batch)
        for _ in range(self.config.ppo_epochs):
            state, sums = self.step_fn(state, batch)
        out = summarise(jax.device_get(sums))
        out["batch_tokens"] = float(
            mproc.global_count(host["tokens"].size + np.size(host.get("prefix_tokens", ())))
        )
        out["train_tokens"] = float(mproc.global_count((host["segment_ids"] > 0).sum()))
        if "prefix_lengths" in host:  # run once per group instead of once per sample
            out["shared_prefix_tokens"] = float(host["prefix_lengths"].sum())
        out["update_s"] = time.perf_counter() - t0
        return state, out

    def _host_batch(self, groups: list[list[Episode]]) -> dict[str, np.ndarray]:
        """Advantages → this process's rows (packed, or with shared prefixes when cheaper)."""
        episodes = [e for g in groups for e in g]
        rows_multiple = mproc.local_row_multiple(self.row_multiple)
        if not episodes:
            return mproc.empty_batch()
        rewards = np.array([[e.reward for e in g] for g in groups], np.float32)
        adv = np.asarray(advantages_lib.get(self.config.advantage)(rewards)).reshape(-1)
        if self.token_cost is None:
            return make_train_batch(
                episodes, adv, self.config.layout, max_len=self.max_len, row_multiple=rows_multiple
            )
        return cheapest_train_batch(
            episodes,
            adv,
            self.config.layout,
            self.token_cost,
            max_len=self.max_len,
            row_multiple=rows_multiple,
        )

    def sync_sampler(self, engine, state) -> None:
        """The sampler's weights := the train state's (in place, no second copy)."""
        mproc.sync_engine_params(engine, self.graphdef, state.params, self.rest)

    def model(self, state):
        return nnx.merge(self.graphdef, state.params, self.rest)
