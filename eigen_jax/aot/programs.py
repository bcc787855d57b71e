"""Every device program a training run compiles, built from abstract arrays only.

No weights, no data, no devices: parameters, optimizer state, batches and KV caches are
`jax.ShapeDtypeStruct`s carrying the shardings the run would give them (the logical-axis rules on
the run's mesh), and each program is the run's own jitted function (`train.state.make_train_step`
with the SFT or GRPO loss, `sampling.steps.prefill` / `decode_steps`), so what compiles here is
what the run compiles. Shapes are each program's largest: SFT at `batch_size x seq_len`, the GRPO
step with every episode a full `max_len` row, prefill of every slot at the longest chunk, decode
over the whole cache.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from eigen_jax import sharding as shd
from eigen_jax.models import ModelConfig, Transformer
from eigen_jax.models.attention import CACHE_LOGICAL_AXES
from eigen_jax.models.lora import LoRA
from eigen_jax.sampling import steps
from eigen_jax.train import state as state_lib
from eigen_jax.train.flops import train_flops_per_token


def forward_flops(config: ModelConfig, tokens: int, keys: int) -> float:
    """Forward FLOPs of `tokens` positions each attending `keys` keys (2 per matmul weight and
    per score / value product)."""
    matmul_params = config.num_params(active=True) - (
        0 if config.tie_word_embeddings else config.vocab_size * config.hidden_size
    )
    attention = 4 * config.num_layers * config.num_heads * config.head_dim * keys
    return tokens * (2 * matmul_params + attention)


@dataclasses.dataclass
class Program:
    """One program to compile: `fn.lower(*args, **kwargs)`; `resident` are the arrays that stay
    allocated outside it while it runs (the sampler's cache during a GRPO update, say)."""

    name: str
    fn: Callable
    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)
    resident: Any = None
    mesh: Any = None  # compiled under jax.set_mesh(mesh), as the run calls it
    model_flops: float = 0.0  # one call's model FLOPs, all chips (XLA counts a loop body once)
    reads: int = 1  # times one call must read its arguments from HBM (decode: once per step)


def per_chip_bytes(tree: Any) -> int:
    """Bytes one chip holds of the abstract arrays in `tree` (its shard of each)."""
    total = 0
    for x in jax.tree.leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) else x.shape
        total += math.prod(shape) * jnp.dtype(x.dtype).itemsize
    return total


def _sds(shape, dtype, sharding) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=sharding)


def abstract_model(config: ModelConfig, mesh, *filters):
    """`nnx.split(model, *filters)` of the model, its states as sharded abstract arrays."""
    model = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    graphdef, *states = nnx.split(model, *filters)
    place = lambda st: jax.tree.map(
        lambda a, s: _sds(a.shape, a.dtype, s),
        st,  # noqa: E731
        shd.state_shardings(st, mesh),
    )
    return (graphdef, *map(place, states))


def abstract_train_state(params, tx: optax.GradientTransformation, mesh) -> state_lib.TrainState:
    """The `TrainState` `init_train_state` builds: optimizer moments (subtrees shaped like the
    parameters) sharded like the parameters, as jit propagates them there; other leaves (step
    counters) replicated."""
    opt_state = jax.eval_shape(tx.init, params)
    structure = jax.tree.structure(params)
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(sub):
        if jax.tree.structure(sub) == structure:
            return jax.tree.map(lambda o, p: _sds(o.shape, o.dtype, p.sharding), sub, params)
        return jax.tree.map(lambda o: _sds(o.shape, o.dtype, replicated), sub)

    like_params = lambda x: jax.tree.structure(x) == structure  # noqa: E731
    opt_state = jax.tree.map(
        place,
        opt_state,
        is_leaf=lambda x: (
            like_params(x) or not jax.tree.leaves(x) or isinstance(x, jax.ShapeDtypeStruct)
        ),
    )
    return state_lib.TrainState(
        step=_sds((), jnp.int32, replicated), params=params, opt_state=opt_state
    )


def _batch(mesh, rows: int, length: int, keys: dict[str, Any], scored: int):
    sh = shd.batch_sharding(mesh, 2, shape=(rows, length))
    batch = {k: _sds((rows, length), dt, sh) for k, dt in keys.items()}
    batch["score_index"] = _sds(
        (rows, scored), jnp.int32, shd.batch_sharding(mesh, 2, shape=(rows, scored))
    )
    return batch


SFT_KEYS = {k: jnp.int32 for k in ("tokens", "positions", "segment_ids", "loss_mask")}
GRPO_KEYS = dict(SFT_KEYS, advantages=jnp.float32, behaviour_logprobs=jnp.float32)


def train_program(
    name: str,
    config: ModelConfig,
    mesh,
    tx,
    loss_fn,
    rows: int,
    length: int,
    grad_accum_steps: int = 1,
    keys=SFT_KEYS,
    resident=None,
) -> Program:
    """A train step (`make_train_step` with `loss_fn`) on a `[rows, length]` batch whose every
    position is scored (the largest `score_index` the run can build). With `config.lora` the
    state holds the adapters and their optimizer moments, and the frozen base is an argument
    (`train.state.split_trainable`)."""
    if config.lora is None:
        graphdef, params, rest = abstract_model(config, mesh, nnx.Param, ...)
        frozen = None
    else:
        graphdef, params, frozen, rest = abstract_model(config, mesh, LoRA, nnx.Param, ...)
    state = abstract_train_state(params, tx, mesh)
    step = state_lib.make_train_step(
        graphdef,
        rest,
        tx,
        loss_fn,
        mesh=mesh,
        state_sharding=jax.tree.map(lambda x: x.sharding, state),
        grad_accum_steps=grad_accum_steps,
        frozen=frozen,
    )
    return Program(
        name,
        step,
        (state, _batch(mesh, rows, length, keys, length - 1)),
        resident=resident,
        mesh=mesh,
        model_flops=train_flops_per_token(config, length) * rows * length,
    )


def sampler_arrays(config: ModelConfig, mesh, num_slots: int, max_len: int):
    """(graphdef, params, cache) of the sampling engine: the model's weights as stored, and its
    KV cache in the compute dtype, both placed by the logical rules."""
    graphdef, params = abstract_model(config, mesh)
    shape = (config.num_layers, num_slots, config.num_kv_heads, max_len, config.head_dim)
    sh = shd.logical_to_sharding(CACHE_LOGICAL_AXES, mesh, shape)
    cache = {n: _sds(shape, config.compute_dtype, sh) for n in ("k", "v")}
    return graphdef, params, cache


def prefill_program(
    name: str, config: ModelConfig, mesh, num_slots: int, max_len: int, chunk: int, resident=None
) -> Program:
    """`steps.prefill` of a `chunk`-token chunk in every slot at once, on the whole cache."""
    graphdef, params, cache = sampler_arrays(config, mesh, num_slots, max_len)
    rep = NamedSharding(mesh, PartitionSpec())
    row = lambda dt: _sds((num_slots,), dt, rep)  # noqa: E731
    args = (
        graphdef,
        params,
        cache,
        row(jnp.int32),
        _sds((num_slots, chunk), jnp.int32, rep),
        _sds((num_slots, chunk), jnp.int32, rep),
        row(jnp.int32),
        row(jnp.uint32),
        row(jnp.float32),
        row(jnp.int32),
        row(jnp.float32),
    )
    return Program(
        name,
        steps.prefill,
        args,
        {"kv_len": None},
        resident=resident,
        mesh=mesh,
        model_flops=forward_flops(config, num_slots * chunk, max_len),
    )


def decode_program(
    name: str,
    config: ModelConfig,
    mesh,
    num_slots: int,
    max_len: int,
    steps_per_sync: int,
    max_stop_ids: int = 8,
    resident=None,
) -> Program:
    """`steps.decode_steps` over every slot and the whole cache (`steps_per_sync` steps)."""
    graphdef, params, cache = sampler_arrays(config, mesh, num_slots, max_len)
    rep = NamedSharding(mesh, PartitionSpec())
    empty = steps.SlotState.empty(num_slots, max_stop_ids)
    state = steps.SlotState(*(_sds(np.shape(x), np.asarray(x).dtype, rep) for x in empty))
    return Program(
        name,
        steps.decode_steps,
        (graphdef, params, cache, state),
        {"num_steps": steps_per_sync, "kv_len": None},
        resident=resident,
        mesh=mesh,
        model_flops=forward_flops(config, num_slots * steps_per_sync, max_len),
        reads=steps_per_sync,
    )
