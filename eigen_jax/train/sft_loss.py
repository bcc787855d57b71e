"""Supervised fine-tuning loss: token-level cross-entropy on masked target tokens.

Agent SFT masks everything but the assistant's tokens; user-simulator SFT everything but the
user's. Which tokens count is decided by the data pipeline's `loss_mask`; this loss only sums.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from eigen_jax.train.logprobs import chunked_token_logprobs, shifted_targets, valid_index
from eigen_jax.train.router_aux import add_router_aux, forward_with_router_stats


def sft_loss(
    model,
    batch: dict[str, jax.Array],
    normalizer: jax.Array,
    chunk_size: int = 256,
    router_aux_loss_coef: float = 0.0,
):
    """Cross-entropy over the target tokens; an MoE model adds its router's load-balancing
    loss times `router_aux_loss_coef` (`train.router_aux`) and reports its statistics."""
    tokens, seg = batch["tokens"], batch.get("segment_ids")
    hidden, stats = forward_with_router_stats(
        model, tokens, batch.get("positions"), seg, return_hidden=True
    )
    targets, mask = shifted_targets(tokens, seg, batch["loss_mask"])
    hidden = hidden[:, :-1]
    index = batch.get("score_index")
    if index is not None:  # project only the scored positions (`logprobs.score_index`)
        pick = lambda x: jnp.take_along_axis(x, index, axis=1)  # noqa: E731
        hidden = jnp.take_along_axis(hidden, index[..., None], axis=1)
        targets = pick(targets)
        mask = pick(mask) * valid_index(batch["loss_mask"], index)
    logp = chunked_token_logprobs(hidden, model.project, targets, chunk_size)
    nll_sum = -(logp * mask).sum()
    return add_router_aux(
        nll_sum / normalizer,
        {"nll_sum": nll_sum, "tokens": mask.sum()},
        stats,
        router_aux_loss_coef,
        mask.sum() / normalizer,
    )
