"""SFT loss: projecting only the scored positions (`score_index`) changes nothing but speed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eigen_jax import models
from eigen_jax.train import state as state_lib
from eigen_jax.train.logprobs import score_index
from eigen_jax.train.sft_loss import sft_loss


def _batch(rng, b=4, t=80):
    tokens = rng.integers(0, 256, (b, t))
    seg = np.ones((b, t), np.int32)
    seg[1, 20:] = 2  # two packed dialogues in row 1
    seg[3, 40:] = 0  # padding at the end of row 3
    weights = (rng.random((b, t)) > 0.6).astype(np.float32)
    weights[0, 1] = 1.0  # row 0 scores index 0, which its padding points at
    weights[1, 20] = 1.0  # a segment's first token: no target (boundary)
    weights[1, 30:34] = 0.25  # fractional (prompt-loss) weights
    weights[2] = 0.0  # a row with nothing to score
    weights[3, 3:40] = 1.0  # the longest row decides K
    weights[:, 0] = 0.0
    weights *= seg > 0
    return {
        "tokens": jnp.asarray(tokens, jnp.int32),
        "positions": jnp.asarray(np.where(seg == 2, np.arange(t) - 20, np.arange(t)), jnp.int32),
        "segment_ids": jnp.asarray(seg),
        "loss_mask": jnp.asarray(weights),
    }, weights


def test_scored_positions_only_give_the_same_loss_and_gradient():
    model = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(2))
    graphdef, params, rest = state_lib.split_model(model)
    batch, weights = _batch(np.random.default_rng(0))
    index = score_index(weights, minimum=4)
    assert (weights[:, 1:] > 0).sum(1).max() <= index.shape[1] < weights.shape[1] - 1
    sparse = dict(batch, score_index=jnp.asarray(index))
    normalizer = jnp.float32(weights[:, 1:].sum())

    def value_and_grad(bb):
        f = lambda p: sft_loss(nnx.merge(graphdef, p, rest), bb, normalizer)  # noqa: E731
        return jax.value_and_grad(f, has_aux=True)(params)

    ((l0, m0), g0), ((l1, m1), g1) = value_and_grad(batch), value_and_grad(sparse)
    # independent reference: full logits from the model, log-softmax, weighted by hand
    logits = np.asarray(
        nnx.merge(graphdef, params, rest)(
            batch["tokens"], batch["positions"], batch["segment_ids"]
        ),
        np.float64,
    )
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    tok, seg = np.asarray(batch["tokens"]), np.asarray(batch["segment_ids"])
    nll = 0.0
    for r in range(tok.shape[0]):
        for t in range(tok.shape[1] - 1):
            if seg[r, t + 1] == seg[r, t] and weights[r, t + 1] > 0:
                nll -= weights[r, t + 1] * logp[r, t, tok[r, t + 1]]
    np.testing.assert_allclose(float(m0["nll_sum"]), nll, rtol=1e-5)
    np.testing.assert_allclose(float(m1["nll_sum"]), nll, rtol=1e-5)
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-6)
    np.testing.assert_allclose(float(m1["tokens"]), float(m0["tokens"]), rtol=1e-6)
    for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-4, atol=1e-6)
