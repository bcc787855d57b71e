"""Trajectory-level advantage estimators: pure functions of arrays, registered by name.

The paper's GRPO gives ONE scalar per trajectory, `(r - mean_G) / (std_G + eps)` with the
population std over the G trajectories of a task, and broadcasts it to every policy-generated token
of every turn of that trajectory. Rewards arrive grouped as `[num_groups, group_size]`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from eigen_jax.rl.registry import Registry

AdvantageFn = Callable[..., jnp.ndarray]
_REGISTRY: Registry[AdvantageFn] = Registry("advantage estimator")
register = _REGISTRY.register
get = _REGISTRY.get
names = _REGISTRY.names


def _check(rewards: jnp.ndarray) -> jnp.ndarray:
    rewards = jnp.asarray(rewards, jnp.float32)
    if rewards.ndim != 2 or rewards.shape[1] < 1:
        raise ValueError(f"rewards must be [num_groups, group_size], got shape {rewards.shape}")
    return rewards


@register("grpo")
def grpo(rewards: jnp.ndarray, eps: float = 1e-6) -> jnp.ndarray:
    """(r - mean) / (population std + eps) within each group. All-equal groups give zeros."""
    r = _check(rewards)
    mean = r.mean(axis=1, keepdims=True)
    std = r.std(axis=1, keepdims=True)  # ddof=0: population std, as in the paper
    return (r - mean) / (std + eps)


@register("dr_grpo")
def dr_grpo(rewards: jnp.ndarray) -> jnp.ndarray:
    """Dr. GRPO: mean-centred without the std division (removes the difficulty bias)."""
    r = _check(rewards)
    return r - r.mean(axis=1, keepdims=True)


@register("rloo")
def rloo(rewards: jnp.ndarray) -> jnp.ndarray:
    """Leave-one-out baseline: r_i - mean_{j != i} r_j (needs group_size >= 2)."""
    r = _check(rewards)
    g = r.shape[1]
    if g < 2:
        raise ValueError("rloo needs group_size >= 2")
    return r - (r.sum(axis=1, keepdims=True) - r) / (g - 1)


def informative_groups(rewards: jnp.ndarray) -> jnp.ndarray:
    """Dynamic filtering: a group carries signal only if its rewards are not all equal."""
    r = _check(rewards)
    return jnp.any(r != r[:, :1], axis=1)
