"""Splash attention (Pallas, interpret mode on the CPU) against the XLA query-block path:
forward and gradients, packed segments with padding, GQA ratios 1/2/4, and on a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eigen_jax import sharding
from eigen_jax.models import Transformer, get_config
from eigen_jax.models.attention import causal_block_attention
from eigen_jax.models.splash import splash_attention

T, H, HD = 256, 4, 32


def _segments():
    """Row 0: three packed documents then padding; row 1: one document filling the row."""
    seg = np.zeros((2, T), np.int32)
    seg[0, :90], seg[0, 90:170], seg[0, 170:230] = 1, 2, 3
    seg[1] = 1
    return jnp.asarray(seg)


def _inputs(kv, seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    q = jax.random.normal(ks[0], (2, T, H, HD), jnp.float32)
    k = jax.random.normal(ks[1], (2, T, kv, HD), jnp.float32)
    v = jax.random.normal(ks[2], (2, T, kv, HD), jnp.float32)
    return q, k, v


@pytest.mark.parametrize("kv", [4, 2, 1])
def test_forward_and_gradients_match_xla(kv):
    q, k, v = _inputs(kv)
    seg = _segments()
    real = (seg > 0)[:, :, None, None].astype(jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(9), q.shape)

    def loss(fn, q, k, v):  # padding outputs carry no weight, as in training
        return jnp.sum(fn(q, k, v) * w * real)

    xla = lambda q, k, v: causal_block_attention(q, k, v, seg, HD**-0.5, 64)  # noqa: E731
    spl = lambda q, k, v: splash_attention(q, k, v, seg, HD**-0.5, block=128)  # noqa: E731
    np.testing.assert_allclose(
        np.asarray(spl(q, k, v) * real), np.asarray(xla(q, k, v) * real), atol=2e-5, rtol=1e-5
    )
    g_xla = jax.grad(lambda *a: loss(xla, *a), argnums=(0, 1, 2))(q, k, v)
    g_spl = jax.grad(lambda *a: loss(spl, *a), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_spl, g_xla):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-4, rtol=1e-4)


def _model_loss(model, ids, seg):
    logits = model(ids, segment_ids=seg)
    logp = jax.nn.log_softmax(logits[:, :-1])
    nll = -jnp.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0]
    return jnp.sum(nll * (seg[:, 1:] > 0)) / jnp.sum(seg[:, 1:] > 0)


@pytest.mark.parametrize("mesh_shape", [None, (1, 2, 2)])
def test_model_with_splash_equals_xla(mesh_shape):
    """A Qwen3 model (q/k norm, GQA 2) on a packed batch: same loss and gradients with either
    attention, on one device and shard_mapped over a (fsdp 2, tensor 2) mesh."""
    ids = jnp.asarray(np.random.RandomState(0).randint(3, 256, (2, T)), jnp.int32)
    seg = _segments()
    out = {}
    for impl in ("xla", "splash"):
        model = Transformer(get_config("tiny-qwen3", attention_impl=impl), rngs=nnx.Rngs(0))
        fn = jax.jit(nnx.value_and_grad(_model_loss))
        if mesh_shape is None:
            out[impl] = fn(model, ids, seg)
        else:
            mesh = sharding.make_mesh(mesh_shape, devices=jax.devices()[:4])
            model = sharding.shard_model(model, mesh)
            with jax.set_mesh(mesh):
                out[impl] = fn(model, ids, seg)
    for a, b in zip(jax.tree.leaves(out["splash"]), jax.tree.leaves(out["xla"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)


def test_length_must_be_lane_aligned():
    q, k, v = _inputs(2)
    with pytest.raises(ValueError, match="multiple of 128"):
        splash_attention(q[:, :100], k[:, :100], v[:, :100], _segments()[:, :100], 1.0)
