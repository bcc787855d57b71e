"""The GRPO learner's device programs: policy log-probs of a batch and the clipped-surrogate loss.

Kept apart from the loop (`grpo.py`) so the loss can be tested against the batching layouts and
reused by other learners. Per-token arrays of the batch are `[rows, length]` at the index of the
token they score; the model predicts token t+1 at position t, so everything is shifted by one here.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import jax.numpy as jnp

from eigen_jax.models import lora
from eigen_jax.models.attention import CACHE_ROW_AXIS
from eigen_jax.rl import losses
from eigen_jax.sharding import with_logical_constraint
from eigen_jax.train import state as state_lib
from eigen_jax.train.logprobs import chunked_token_logprobs, shifted_targets, valid_index
from eigen_jax.train.router_aux import add_router_aux, forward_with_router_stats, router_metrics


def policy_logprobs(
    model,
    batch: dict[str, jax.Array],
    chunk_size: int = 256,
    with_entropy: bool = False,
    temperature: float = 1.0,
    return_router_stats: bool = False,
):
    """log π(tokens[t+1] | tokens[:t+1]) as `[rows, length - 1]` (and the entropy there).

    `temperature` is the rollout's sampling temperature: the learner scores tokens under the
    same tempered distribution the sampler drew them from, so ρ and the IS weights compare like
    with like (1.0, the paper's setting, is the model's own distribution).
    `return_router_stats`: return `(result, MoE router statistics or None)`; a shared-prefix
    batch counts its suffix tokens (the prefixes run through the cache path)."""
    out, stats = _policy_logprobs(model, batch, chunk_size, with_entropy, temperature)
    return (out, stats) if return_router_stats else out


def _policy_logprobs(model, batch, chunk_size, with_entropy, temperature):
    tokens, seg = batch["tokens"], batch["segment_ids"]
    if "prefix_tokens" in batch:
        hidden, stats = shared_prefix_hidden(model, batch, return_router_stats=True)
    else:
        hidden, stats = forward_with_router_stats(
            model, tokens, batch["positions"], seg, return_hidden=True
        )
        hidden = hidden[:, :-1]
    targets, _ = shifted_targets(tokens, seg, batch["loss_mask"])
    index = batch.get("score_index")
    if index is None:
        return chunked_token_logprobs(
            hidden,
            model.project,
            targets,
            chunk_size,
            temperature=temperature,
            with_entropy=with_entropy,
        ), stats
    # Project only the positions the loss reads (see `logprobs.score_index`), then scatter back;
    # every other position gets 0 and is masked out by the loss.
    picked = chunked_token_logprobs(
        jnp.take_along_axis(hidden, index[..., None], axis=1),
        model.project,
        jnp.take_along_axis(targets, index, axis=1),
        chunk_size,
        temperature=temperature,
        with_entropy=with_entropy,
    )
    # Scatter-ADD of the first `count` entries only: padding entries point at index 0, which may
    # be a scored position, and must add neither a value nor a gradient there.
    rows = jnp.arange(index.shape[0])[:, None]
    valid = valid_index(batch["loss_mask"], index)
    scatter = lambda x: (
        jnp.zeros(targets.shape, x.dtype).at[rows, index].add(jnp.where(valid, x, 0))
    )
    return (tuple(map(scatter, picked)) if with_entropy else scatter(picked)), stats


def shared_prefix_hidden(model, batch: dict[str, jax.Array], return_router_stats: bool = False):
    """Final hidden states `[rows, length - 1]` of a shared-prefix batch (`rl.train_batch`).

    Each prefix runs once, through the model's cache path: its keys and values fill a cache of
    `prefix_len + length - 1` slots; every row gathers its prefix's cache and runs its suffix
    (all but the last token, whose prediction is never scored) on top of it. Causal attention
    makes this equal to running each full sequence, and the gradient through a prefix's keys and
    values sums over the rows that share it. Padding (prefix slots past its length, suffix
    tokens of segment 0) writes nowhere: it gets the out-of-range position `size`.
    """
    prefix, prefix_len = batch["prefix_tokens"], batch["prefix_lengths"]
    tokens, seg = batch["tokens"][:, :-1], batch["segment_ids"][:, :-1]
    size = prefix.shape[1] + tokens.shape[1]
    slots = jnp.arange(prefix.shape[1], dtype=jnp.int32)[None]
    cache = model.init_cache(prefix.shape[0], size)
    _, cache = model(
        prefix,
        positions=jnp.where(slots < prefix_len, slots, size),
        cache=cache,
        return_hidden=True,
    )
    cache = jax.tree.map(
        lambda x: jnp.take(x, batch["prefix_row"][:, 0], axis=CACHE_ROW_AXIS), cache
    )
    positions = jnp.where(seg > 0, batch["positions"][:, :-1], size)
    # segment_ids only mark the suffix's real tokens for the MoE router statistics here.
    (hidden, _), stats = forward_with_router_stats(
        model, tokens, positions=positions, segment_ids=seg, cache=cache, return_hidden=True
    )
    return (hidden, stats) if return_router_stats else hidden


def make_logprob_fn(
    graphdef,
    rest,
    chunk_size: int = 256,
    temperature: float = 1.0,
    frozen=None,
    adapters: bool = True,
):
    """Jitted `(params, batch) -> [rows, length]` log-probs aligned with the tokens (column 0 is
    0): the rollout-time policy's log-probs (π_old) and the frozen reference's. `frozen`: a
    LoRA model's base (`train.state.split_trainable`), an argument of the program;
    `adapters=False` scores with the base alone (the KL reference of a LoRA policy)."""

    @jax.jit
    def fn(params, batch, frozen=None):
        with contextlib.nullcontext() if adapters else lora.adapters_off():
            lp = policy_logprobs(
                state_lib.merge(graphdef, params, frozen, rest),
                batch,
                chunk_size,
                temperature=temperature,
            )
        # Batch-sharded like the batch it joins (the train step's in_shardings require it).
        return with_logical_constraint(jnp.pad(lp, ((0, 0), (1, 0))), ("batch", None))

    return state_lib.FrozenBound(fn, frozen)


def make_grpo_loss(
    loss_name: str = "grpo",
    chunk_size: int = 256,
    with_entropy: bool = True,
    temperature: float = 1.0,
    router_aux_loss_coef: float = 0.0,
    *,
    eps_low: float = 0.4,
    eps_high: float = 0.4,
    is_cap: float | None = 5.0,
    kl_coef: float = 0.0,
):
    """`loss_fn(model, batch, normalizer) -> (loss, sums)` for `train.state.make_train_step`.

    The batch may carry `old_logprobs` (needed when several optimisation passes reuse one rollout
    batch; absent, π_old is the current policy) and `ref_logprobs` (when a KL term is on).
    The returned metrics are SUMS over the micro-batch (counts, entropy, KL) so that
    gradient accumulation adds them up correctly; `summarise` turns them into fractions.
    """
    policy_loss = losses.get(loss_name)

    def loss_fn(model, batch, normalizer):
        out, stats = policy_logprobs(
            model, batch, chunk_size, with_entropy, temperature, return_router_stats=True
        )
        logp, entropy = out if with_entropy else (out, jnp.zeros_like(out))
        _, mask = shifted_targets(batch["tokens"], batch["segment_ids"], batch["loss_mask"])
        shift = lambda k: batch[k][:, 1:]
        ref = shift("ref_logprobs") if "ref_logprobs" in batch else None
        # With one optimisation pass per rollout batch π_old is the current policy: its
        # log-probs are this forward's, detached (saves the learner a separate forward pass).
        old = shift("old_logprobs") if "old_logprobs" in batch else jax.lax.stop_gradient(logp)
        loss, m = policy_loss(
            logp,
            old,
            shift("advantages"),
            mask,
            behaviour_logprobs=shift("behaviour_logprobs"),
            ref_logprobs=ref,
            normalizer=normalizer,
            eps_low=eps_low,
            eps_high=eps_high,
            is_cap=is_cap,
            kl_coef=kl_coef,
        )
        n = mask.sum()  # policy tokens before behaviour-IS masking
        sums = {
            "policy_tokens": n,
            "clipped_tokens": m["clip_fraction"] * m["policy_tokens"],
            "is_masked_tokens": n - m["policy_tokens"],
            "entropy_sum": (entropy * mask).sum(),
            "kl": m.get("kl", jnp.zeros(())),  # already divided by the global normalizer
            "pg_loss": m["pg_loss"],
        }
        return add_router_aux(loss, sums, stats, router_aux_loss_coef, n / normalizer)

    return loss_fn


def summarise(sums: dict[str, Any]) -> dict[str, float]:
    """Micro-batch sums → the logged fractions and means."""
    n = max(float(sums["policy_tokens"]), 1.0)
    return {
        "policy_tokens": float(sums["policy_tokens"]),
        "clip_fraction": float(sums["clipped_tokens"]) / n,
        "is_mask_fraction": float(sums["is_masked_tokens"]) / n,
        "entropy": float(sums["entropy_sum"]) / n,
        "kl": float(sums["kl"]),
        "pg_loss": float(sums["pg_loss"]),
        "loss": float(sums["loss"]),
        "grad_norm": float(sums["grad_norm"]),
        **router_metrics(sums),
    }
