"""Blockwise causal training attention == the dense masked reference (values and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eigen_jax.models import Transformer, get_config
from eigen_jax.models.attention import causal_block_attention, grouped_attention, training_mask


def _packed_segments(rng, b, t):
    """Rows of several segments of random lengths, then right padding (segment 0)."""
    seg = np.zeros((b, t), np.int32)
    for r in range(b):
        start, s = 0, 1
        while start < t - 20:
            n = rng.randint(5, 90)
            seg[r, start : start + n] = s
            start, s = start + n, s + 1
    return jnp.asarray(seg)


# 13 blocks (58 s of compiling here) in `make test-slow`; 100 = 2 full blocks + a 3-long tail.
@pytest.mark.parametrize("block", [pytest.param(16, marks=pytest.mark.slow), 100])
def test_block_attention_matches_dense(block):
    rng = np.random.RandomState(block)
    b, t, h, kv, hd = 2, 203, 4, 2, 8  # t not a multiple of any block
    q, k, v = (jnp.asarray(rng.randn(b, t, n, hd), jnp.float32) for n in (h, kv, kv))
    seg = _packed_segments(rng, b, t)
    # Padding queries (segment 0) attend nothing; their outputs are don't-care (uniform over a
    # different key range in the two paths) and never reach a loss, so weight them 0.
    real = np.asarray(seg != 0)
    w = jnp.asarray(rng.randn(b, t, h, hd) * real[:, :, None, None], jnp.float32)
    dense = lambda q, k, v: grouped_attention(
        q,
        k.swapaxes(1, 2),
        v.swapaxes(1, 2),  # noqa: E731
        training_mask(seg),
        hd**-0.5,
    )
    blocked = lambda q, k, v: causal_block_attention(q, k, v, seg, hd**-0.5, block)
    np.testing.assert_allclose(
        np.asarray(blocked(q, k, v))[real], np.asarray(dense(q, k, v))[real], atol=2e-6
    )
    grad = lambda f: jax.grad(lambda q, k, v: jnp.sum(f(q, k, v) * w), argnums=(0, 1, 2))
    for ours, ref in zip(grad(blocked)(q, k, v), grad(dense)(q, k, v)):
        np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_model_logits_do_not_depend_on_attention_block():
    rng = np.random.RandomState(0)
    ids = jnp.asarray(rng.randint(3, 256, (2, 150)), jnp.int32)
    seg = _packed_segments(rng, 2, 150)
    logits = []
    for block in (0, 16, 64):
        config = get_config("tiny-qwen3", attention_block=block)
        model = Transformer(config, rngs=nnx.Rngs(1))
        logits.append(np.asarray(model(ids, segment_ids=seg))[np.asarray(seg != 0)])
    np.testing.assert_allclose(logits[1], logits[0], atol=1e-5)
    np.testing.assert_allclose(logits[2], logits[0], atol=1e-5)


def test_negative_block_is_rejected():
    with pytest.raises(ValueError, match="attention_block"):
        get_config("tiny-qwen3", attention_block=-1)
