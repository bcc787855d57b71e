"""Chunked next-token log-probs equal the full-logits computation, in value and gradient, for
every chunking regime: one chunk (no remat), lengths that are not a multiple of the chunk, and
several rematerialised chunks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eigen_jax.train.logprobs import chunked_token_logprobs


def _reference(hidden, w, targets, temperature):
    logits = jnp.einsum("btd,dv->btv", hidden, w) / temperature
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    entropy = -(jnp.exp(logp) * logp).sum(-1)
    return picked, entropy


@pytest.mark.parametrize("length,chunk_size", [(7, 256), (10, 4), (12, 4), (13, 5)])
def test_chunked_matches_full_logits_value_and_gradient(length, chunk_size):
    rng = np.random.RandomState(length)
    hidden = jnp.asarray(rng.normal(size=(2, length, 6)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(6, 11)), jnp.float32)
    targets = jnp.asarray(rng.randint(0, 11, (2, length)), jnp.int32)
    weights = jnp.asarray(rng.normal(size=(2, length)), jnp.float32)

    def ours(h, w):
        lp, ent = chunked_token_logprobs(
            h, lambda x: x @ w, targets, chunk_size, temperature=0.7, with_entropy=True
        )
        return (lp * weights).sum() + (ent * weights).sum(), (lp, ent)

    def ref(h, w):
        lp, ent = _reference(h, w, targets, 0.7)
        return (lp * weights).sum() + (ent * weights).sum(), (lp, ent)

    (_, (lp, ent)), grads = jax.jit(jax.value_and_grad(ours, (0, 1), has_aux=True))(hidden, w)
    (_, (lp_ref, ent_ref)), grads_ref = jax.value_and_grad(ref, (0, 1), has_aux=True)(hidden, w)
    assert lp.shape == (2, length)
    np.testing.assert_allclose(lp, lp_ref, atol=1e-5)
    np.testing.assert_allclose(ent, ent_ref, atol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, atol=1e-4)
