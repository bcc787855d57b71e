"""Forward-contract details: return_hidden + project, remat, dtypes, input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eigen_jax.models import Transformer, get_config

IDS = jnp.asarray(np.random.RandomState(0).randint(3, 256, (2, 10)), jnp.int32)


@pytest.fixture(scope="module")
def model():
    return Transformer(get_config("tiny-llama"), rngs=nnx.Rngs(0))


def test_hidden_then_project_equals_logits(model):
    logits, hidden, chunked = jax.jit(
        lambda m: (
            m(IDS),
            m(IDS, return_hidden=True),
            jnp.concatenate(
                [
                    m.project(m(IDS, return_hidden=True))[..., :100],
                    m.project(m(IDS, return_hidden=True))[..., 100:],
                ],
                -1,
            ),
        )
    )(model)
    assert hidden.shape == (2, 10, 64) and logits.shape == (2, 10, 256)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(logits), atol=1e-6)
    # Hidden states are final-normed: each row has RMS ~ the norm scale's RMS scale (here 1).
    rms = np.sqrt(np.mean(np.asarray(hidden) ** 2, -1))
    np.testing.assert_allclose(rms, 1.0, rtol=1e-3)


def _loss(m, ids):
    logits = m(ids)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), ids[:, 1:, None], -1))


def test_remat_policies_give_identical_gradients(model):
    grads = {}
    for policy in ("none", "full", "dots_saveable"):
        m = Transformer(get_config("tiny-llama", remat=policy), rngs=nnx.Rngs(0))
        grads[policy] = jax.jit(nnx.grad(_loss))(m, IDS)
    for policy in ("full", "dots_saveable"):
        for a, b in zip(jax.tree.leaves(grads["none"]), jax.tree.leaves(grads[policy])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("remat", ["none", "full"])
def test_scanned_stack_equals_unrolled(remat):
    """The scanned decoder stack (one block in the program) and the unrolled loop over the same
    stacked parameters: same logits, gradients and cache writes."""
    out = {}
    for scan in (True, False):
        m = Transformer(get_config("tiny-qwen3", remat=remat, scan_layers=scan), rngs=nnx.Rngs(0))
        loss, grads = jax.jit(nnx.value_and_grad(_loss))(m, IDS)
        logits, cache = jax.jit(lambda m: m(IDS, cache=m.init_cache(2, 16)))(m)
        out[scan] = (loss, grads, logits, cache)
    for a, b in zip(jax.tree.leaves(out[True]), jax.tree.leaves(out[False])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_layers_are_stacked_and_independent(model):
    cfg = model.config
    q = model.layers.attn.q[...]
    assert q.shape == (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.head_dim)
    assert model.layers.attn.q.get_metadata()["out_sharding"][0] == "layers"
    assert not np.allclose(np.asarray(q[0]), np.asarray(q[1]))  # each layer its own init


def test_bf16_compute_and_params():
    cfg = get_config("tiny-qwen3", dtype="bfloat16", param_dtype="bfloat16")
    m = Transformer(cfg, rngs=nnx.Rngs(0))
    assert m.layers.attn.q[...].dtype == jnp.bfloat16
    hidden, logits = jax.jit(lambda m: (m(IDS, return_hidden=True), m(IDS)))(m)
    assert hidden.dtype == jnp.bfloat16 and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ValueError, match=r"input_ids must be \[batch, length\]"):
        model(jnp.ones((4,), jnp.int32))
    with pytest.raises(TypeError, match="integers"):
        model(jnp.ones((1, 4), jnp.float32))
    with pytest.raises(ValueError, match="positions shape"):
        model(jnp.ones((1, 4), jnp.int32), positions=jnp.ones((1, 3), jnp.int32))
    with pytest.raises(ValueError, match="cache has 1 layers"):
        model(
            jnp.ones((1, 4), jnp.int32), cache=jax.tree.map(lambda x: x[:1], model.init_cache(1, 8))
        )
