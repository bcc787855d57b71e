"""The MoE router's load-balancing term for any token-level loss, and its logged metrics.

A learner's loss is a sum over its micro-batch divided by the global loss-token count
(`state.LossFn`); the auxiliary loss is a per-batch mean, so each micro-batch adds its share
(its loss tokens over the global count): with one micro-batch the term is exactly
`coef * aux`, and accumulated micro-batches weight theirs by size. The router statistics travel
as sums in the metrics, so gradient accumulation adds them like every other count.
"""

from __future__ import annotations

from typing import Any

import jax

from eigen_jax.models import moe

STAT_KEYS = {"counts": "router_counts", "probs": "router_probs", "tokens": "router_tokens"}


def forward_with_router_stats(model, *args, **kwargs):
    """`model(*args, **kwargs)` and its router statistics (None for a dense model)."""
    if model.config.num_experts == 0:
        return model(*args, **kwargs), None
    return model(*args, return_router_stats=True, **kwargs)


def add_router_aux(
    loss: jax.Array,
    sums: dict[str, jax.Array],
    stats: moe.RouterStats | None,
    coef: float,
    share: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`loss + coef * share * load_balancing_loss(stats)`, the statistics added to `sums`."""
    if stats is None:
        return loss, sums
    sums = dict(sums, **{STAT_KEYS[k]: v for k, v in stats.items()})
    if coef:
        loss = loss + coef * share * moe.load_balancing_loss(stats)
    return loss, sums


def router_metrics(sums: dict[str, Any]) -> dict[str, float]:
    """Expert load (max/min share against an even split) and the balancing loss of the step's
    summed statistics; empty for a dense model."""
    if STAT_KEYS["counts"] not in sums:
        return {}
    return moe.expert_load({k: sums[v] for k, v in STAT_KEYS.items()})
