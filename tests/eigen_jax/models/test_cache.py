"""The KV-cache contract the sampler relies on: cached prefill + decode equals the no-cache
forward, for right-padded rows of different lengths and for chunks appended at a row's length."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eigen_jax.models import Transformer, get_config

ATOL = 1e-5


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2", "tiny-qwen3"])
def model(request):
    return Transformer(get_config(request.param), rngs=nnx.Rngs(0))


def _reference(model, row):
    """No-cache logits of one unpadded sequence."""
    return np.asarray(_forward(model, jnp.asarray(row)[None]))[0]


_forward = jax.jit(lambda m, ids: m(ids))


def test_right_padded_prefill_then_per_row_decode(model):
    rng = np.random.RandomState(0)
    lengths = [5, 11, 8]
    full = [rng.randint(3, 256, n + 6).astype(np.int32) for n in lengths]  # prompt + 6 decoded
    t = max(lengths)
    ids = np.zeros((3, t), np.int32)
    for b, n in enumerate(lengths):
        ids[b, :n] = full[b][:n]
    # Padding keeps counting positions: pad tokens land in slots the row overwrites later.
    positions = np.broadcast_to(np.arange(t, dtype=np.int32), (3, t))
    step = jax.jit(lambda m, i, p, c: m(i, positions=p, cache=c))
    cache = model.init_cache(3, 32)
    logits, cache = step(model, jnp.asarray(ids), jnp.asarray(positions), cache)
    refs = [_reference(model, row) for row in full]
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(np.asarray(logits[b, :n]), refs[b][:n], atol=ATOL)
    for k in range(6):
        tok = np.array([[row[n + k]] for row, n in zip(full, lengths)], np.int32)
        pos = np.array([[n + k] for n in lengths], np.int32)
        logits, cache = step(model, jnp.asarray(tok), jnp.asarray(pos), cache)
        for b, n in enumerate(lengths):
            np.testing.assert_allclose(np.asarray(logits[b, 0]), refs[b][n + k], atol=ATOL)


def test_append_chunk_at_row_length(model):
    rng = np.random.RandomState(1)
    row = rng.randint(3, 256, 20).astype(np.int32)
    cache = model.init_cache(1, 24)
    step = jax.jit(lambda m, i, p, c: m(i, positions=p, cache=c))
    prefix_pos = jnp.arange(7, dtype=jnp.int32)[None]
    _, cache = step(model, jnp.asarray(row[None, :7]), prefix_pos, cache)
    # Fill the cache's stale region with garbage to prove it is never attended.
    cache = {"k": cache["k"].at[:, :, :, 7:].set(1e3), "v": cache["v"].at[:, :, :, 7:].set(-1e3)}
    chunk_pos = jnp.arange(7, 20, dtype=jnp.int32)[None]
    logits, cache = step(model, jnp.asarray(row[None, 7:]), chunk_pos, cache)
    np.testing.assert_allclose(np.asarray(logits[0]), _reference(model, row)[7:], atol=ATOL)


def test_init_cache_layout(model):
    cfg = model.config
    cache = model.init_cache(2, 9, dtype=jnp.bfloat16)
    assert set(cache) == {"k", "v"}
    for name in ("k", "v"):
        assert cache[name].shape == (cfg.num_layers, 2, cfg.num_kv_heads, 9, cfg.head_dim)
        assert cache[name].dtype == jnp.bfloat16
    # jit + donation friendly: a pure pytree of arrays in and out.
    step = jax.jit(lambda m, c: m(jnp.ones((2, 1), jnp.int32), cache=c)[1], donate_argnums=1)
    out = step(model, model.init_cache(2, 9))
    assert jax.tree.structure(out) == jax.tree.structure(model.init_cache(2, 9))
