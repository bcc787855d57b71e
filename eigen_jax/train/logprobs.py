"""Next-token log-probs without materialising [B, T, V] logits for the whole sequence at once.

Large vocabularies (150k for Qwen) make the vocab projection + log-softmax the biggest activation
in training. We project the final hidden states in sequence chunks under `jax.checkpoint`, so only
one chunk's logits live at a time in the forward pass and they are recomputed in the backward
(a sequence that fits one chunk is projected once, without rematerialisation).
Shared by SFT (cross-entropy) and GRPO (policy log-probs). Both losses read only some positions
(assistant or user tokens, policy tokens), so a batch may carry `score_index`: those positions,
and only their hidden states are projected onto the vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from eigen_jax.padding import bucket


def score_index(loss_mask: np.ndarray, minimum: int = 16) -> np.ndarray:
    """`[rows, K]` indices t (into the shifted `[rows, length - 1]` arrays) where token t + 1 has
    a nonzero loss weight: the only positions whose log-probs the loss reads.

    The learner projects just these hidden states onto the vocabulary instead of every position;
    in a dialogue most tokens are context (prompt, the other role, tool results), and the
    vocabulary projection is the largest matmul of a small model. K = bucket(most scored tokens in
    a row) so shapes (and compilations) stay few; a row's entries after its own count are 0 and
    are dropped on device (`valid_index`).
    """
    targets = np.asarray(loss_mask)[:, 1:] > 0
    k = min(bucket(int(targets.sum(axis=1).max(initial=0)), minimum), targets.shape[1])
    index = np.zeros((len(targets), k), np.int32)
    for r, row in enumerate(targets):
        hits = np.flatnonzero(row)
        index[r, : len(hits)] = hits
    return index


def valid_index(loss_mask: jnp.ndarray, index: jnp.ndarray) -> jnp.ndarray:
    """[rows, K] bool: which `score_index` entries are real (the rest are padding pointing at 0,
    which may itself be a scored position and must not count twice)."""
    count = (loss_mask[:, 1:] > 0).sum(axis=1)
    return jnp.arange(index.shape[1])[None, :] < count[:, None]


def chunked_token_logprobs(
    hidden: jnp.ndarray,
    project: Callable[[jnp.ndarray], jnp.ndarray],
    targets: jnp.ndarray,
    chunk_size: int = 256,
    temperature: float = 1.0,
    with_entropy: bool = False,
):
    """log p(targets[b, t] | hidden[b, t]) for all b, t; optionally the entropy of each row.

    hidden: [B, T, D]; targets: [B, T] int. Returns [B, T] float32 (and [B, T] entropy).
    """
    b, t, d = hidden.shape
    n = -(-t // chunk_size)
    # n equal chunks of at most `chunk_size`: padding is < n rows, never up to a whole chunk
    # (a 63-token GRPO row padded to 256 used to project 4x the tokens it scores).
    chunk_size = -(-t // n)
    pad = n * chunk_size - t
    if pad:
        hidden = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, pad)))
    h = hidden.reshape(b, n, chunk_size, d).swapaxes(0, 1)
    y = targets.reshape(b, n, chunk_size).swapaxes(0, 1)

    def one(hc, yc):
        logits = project(hc).astype(jnp.float32) / temperature
        logz = jax.nn.logsumexp(logits, axis=-1)
        lp = jnp.take_along_axis(logits, yc[..., None], axis=-1)[..., 0] - logz
        if not with_entropy:
            return lp, jnp.zeros_like(lp)
        p = jax.nn.softmax(logits, axis=-1)
        return lp, logz - (p * logits).sum(-1)

    if n == 1:
        # One chunk: rematerialising it barely lowers peak memory (its backward runs first,
        # while every activation of the trunk is still live) and costs a second vocab
        # projection, so its logits are kept for the backward.
        lp, ent = jax.tree.map(lambda x: x[None], one(h[0], y[0]))
    else:
        lp, ent = jax.lax.map(lambda xs: jax.checkpoint(one)(*xs), (h, y))
    lp = lp.swapaxes(0, 1).reshape(b, n * chunk_size)[:, :t]
    ent = ent.swapaxes(0, 1).reshape(b, n * chunk_size)[:, :t]
    return (lp, ent) if with_entropy else lp


def shifted_targets(tokens: jnp.ndarray, segment_ids: jnp.ndarray | None, mask: jnp.ndarray):
    """Targets for position t are tokens[t + 1]; a target counts only inside the same segment.

    Returns (targets [B, T-1], target_mask [B, T-1]) where target_mask[b, t] = mask[b, t + 1] and
    tokens t, t + 1 share a (non-padding) segment.
    """
    targets = tokens[:, 1:]
    m = mask[:, 1:].astype(jnp.float32)
    if segment_ids is not None:
        same = (segment_ids[:, 1:] == segment_ids[:, :-1]) & (segment_ids[:, 1:] != 0)
        m = m * same
    return targets, m
