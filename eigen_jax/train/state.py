"""Train state and the jitted (pjit) train step with explicit in/out shardings.

The NNX model is split once into a static `graphdef` and its parameter `State`; the step is a pure
function of `TrainState` (params, optimizer state, step) and a batch, jitted with the state's own
shardings in and out (donated), and the batch sharded on the batch mesh axes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from eigen_jax import sharding as shd
from eigen_jax.models import lora as lora_lib

# loss_fn(model, batch, normalizer) -> (loss, metrics): `loss` is a SUM over the micro-batch
# divided by `normalizer` (the global count of loss tokens), so micro-batch losses add up.
LossFn = Callable[[nnx.Module, dict[str, jax.Array], jax.Array], tuple[jax.Array, dict]]


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def split_model(model: nnx.Module):
    """(graphdef, params, rest): params are trained, `rest` (e.g. caches/RNG state) is static."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


def split_trainable(model: nnx.Module):
    """(graphdef, trainable, frozen, rest): a model with LoRA adapters trains them and keeps its
    `nnx.Param` base frozen (never differentiated, never in the optimizer, never donated); one
    without trains its Params (frozen None). Merge back with `merge(graphdef, trainable,
    frozen, rest)`."""
    if not jax.tree.leaves(nnx.state(model, lora_lib.LoRA)):
        graphdef, params, rest = split_model(model)
        return graphdef, params, None, rest
    return nnx.split(model, lora_lib.LoRA, nnx.Param, ...)


def merge(graphdef, trainable, frozen, rest) -> nnx.Module:
    """The model from `split_trainable`'s parts (frozen None: a model without adapters)."""
    if frozen is None:
        return nnx.merge(graphdef, trainable, rest)
    return nnx.merge(graphdef, trainable, frozen, rest)


def init_train_state(params: Any, tx: optax.GradientTransformation, mesh=None) -> TrainState:
    """Optimizer state is created under jit so it inherits the params' shardings; leaves that
    are not sharded on the mesh (step, optimizer counters) are replicated onto it."""
    opt_state = jax.jit(tx.init)(params)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)
    if mesh is None:
        return state
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def place(x):
        on_mesh = isinstance(x.sharding, jax.sharding.NamedSharding) and x.sharding.mesh == mesh
        return x if on_mesh else jax.device_put(x, replicated)

    return jax.tree.map(place, state)


def state_shardings(state: TrainState) -> Any:
    return jax.tree.map(lambda x: x.sharding, state)


def make_train_step(
    graphdef,
    rest,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    *,
    mesh=None,
    state_sharding=None,
    grad_accum_steps: int = 1,
    normalizer_key: str = "loss_mask",
    frozen=None,
    dropout_seed: int = 0,
):
    """Build `step(state, batch) -> (state, metrics)`.

    The batch (all `[batch, length]`) is split into `grad_accum_steps` micro-batches along the
    batch axis; gradients of each micro-batch's normalised loss are summed under `lax.scan`, so
    the update equals the full-batch update. `normalizer_key` names the mask whose sum (over the
    whole batch, targets only: `mask[:, 1:]`) normalises the token-level mean.

    `frozen` (`split_trainable`: a LoRA model's base, arrays or abstract arrays) is an argument
    of the jitted step that is neither differentiated nor donated; the returned step binds it.
    Adapter dropout (if any) draws from `dropout_seed` folded with the step number.
    """

    def grads_of(params, micro, normalizer, frozen):
        def f(p):
            return loss_fn(merge(graphdef, p, frozen, rest), micro, normalizer)

        (loss, metrics), grads = jax.value_and_grad(f, has_aux=True)(params)
        return loss, metrics, grads

    def split_micro(x):
        """[rows, ...] -> [accum, rows / accum, ...], micro-batch i = rows i, i + accum, ...:
        strided, so each device's rows hold an equal share of every micro-batch and no row
        moves (contiguous blocks would put each micro-batch on 1/accum of the devices)."""
        x = x.reshape((x.shape[0] // grad_accum_steps, grad_accum_steps) + x.shape[1:])
        x = x.swapaxes(0, 1)
        if mesh is None:
            return x
        axes = (None, "batch") + (None,) * (x.ndim - 2)
        return jax.lax.with_sharding_constraint(x, shd.logical_to_sharding(axes, mesh, x.shape))

    def step(state: TrainState, batch: dict[str, jax.Array], frozen=None):
        if frozen is None:  # no adapters, no adapter dropout
            return _step(state, batch, frozen)
        key = jax.random.fold_in(jax.random.key(dropout_seed), state.step)
        with lora_lib.dropout_key(key):
            return _step(state, batch, frozen)

    def _step(state: TrainState, batch: dict[str, jax.Array], frozen):
        normalizer = jnp.maximum(batch[normalizer_key][:, 1:].astype(jnp.float32).sum(), 1.0)
        if grad_accum_steps == 1:
            loss, metrics, grads = grads_of(state.params, batch, normalizer, frozen)
        else:
            micro = jax.tree.map(split_micro, batch)
            zeros = jax.tree.map(jnp.zeros_like, state.params)

            def body(acc, mb):
                loss, metrics, grads = grads_of(state.params, mb, normalizer, frozen)
                acc = jax.tree.map(jnp.add, acc, grads)
                return acc, (loss, metrics)

            grads, (losses, metrics) = jax.lax.scan(body, zeros, micro)
            loss = losses.sum()
            metrics = jax.tree.map(lambda m: m.sum(0), metrics)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(
            metrics, loss=loss, grad_norm=optax.global_norm(grads), loss_tokens=normalizer
        )
        return TrainState(state.step + 1, params, opt_state), metrics

    if mesh is None or state_sharding is None:
        return FrozenBound(jax.jit(step, donate_argnums=(0,)), frozen)
    in_shardings = (state_sharding, shd.batch_sharding(mesh, 2))
    if frozen is not None:
        in_shardings += (jax.tree.map(lambda x: x.sharding, frozen),)
    return FrozenBound(
        MeshBound(
            jax.jit(
                step,
                in_shardings=in_shardings,
                out_shardings=(state_sharding, None),
                donate_argnums=(0,),
            ),
            mesh,
        ),
        frozen,
    )


class FrozenBound:
    """`step(state, batch)` of a jitted `step(state, batch, frozen)`: the frozen base travels
    as an argument (never a closed-over constant) without changing the callers."""

    def __init__(self, fn, frozen):
        self.fn, self.frozen = fn, frozen

    def _args(self, args):
        return args if self.frozen is None else args + (self.frozen,)

    def __call__(self, *args):
        return self.fn(*self._args(args))

    def lower(self, *args):
        return self.fn.lower(*self._args(args))


class MeshBound:
    """A jitted function traced and run under its mesh (`jax.set_mesh`): the model's logical
    sharding constraints and its shard_mapped kernels (splash attention) need the mesh while
    tracing; without it they would be no-ops or replicate."""

    def __init__(self, fn, mesh):
        self.fn, self.mesh = fn, mesh

    def __call__(self, *args, **kwargs):
        with jax.set_mesh(self.mesh):
            return self.fn(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with jax.set_mesh(self.mesh):
            return self.fn.lower(*args, **kwargs)
