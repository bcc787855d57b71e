"""Packed sequences (segment_ids) give the same logits as each example run alone."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eigen_jax.models import Transformer, get_config

_forward = jax.jit(lambda m, ids, pos=None, seg=None: m(ids, positions=pos, segment_ids=seg))


def test_packed_equals_unpacked():
    model = Transformer(get_config("tiny-qwen3"), rngs=nnx.Rngs(3))
    rng = np.random.RandomState(0)
    examples = [rng.randint(3, 256, n).astype(np.int32) for n in (7, 12, 5)]
    t = 30  # 24 real tokens + 6 padding
    ids = np.zeros((1, t), np.int32)
    seg = np.zeros((1, t), np.int32)
    pos = np.zeros((1, t), np.int32)
    start = 0
    for i, ex in enumerate(examples):
        ids[0, start : start + len(ex)] = ex
        seg[0, start : start + len(ex)] = i + 1
        pos[0, start : start + len(ex)] = np.arange(len(ex))
        start += len(ex)
    packed = np.asarray(_forward(model, jnp.asarray(ids), jnp.asarray(pos), jnp.asarray(seg)))
    assert np.isfinite(packed).all()  # padding rows attend nothing but must not produce NaN
    start = 0
    for ex in examples:
        alone = np.asarray(_forward(model, jnp.asarray(ex)[None]))[0]
        np.testing.assert_allclose(packed[0, start : start + len(ex)], alone, atol=1e-5)
        start += len(ex)


def test_segments_do_not_leak_even_with_continuing_positions():
    """Masking comes from segment_ids, not positions: changing one segment's tokens leaves the
    other's logits unchanged."""
    model = Transformer(get_config("tiny-llama"), rngs=nnx.Rngs(4))
    rng = np.random.RandomState(1)
    ids = rng.randint(3, 256, (1, 16)).astype(np.int32)
    seg = np.array([[1] * 8 + [2] * 8], np.int32)
    base = np.asarray(_forward(model, jnp.asarray(ids), None, jnp.asarray(seg)))
    changed = ids.copy()
    changed[0, :8] = rng.randint(3, 256, 8)
    out = np.asarray(_forward(model, jnp.asarray(changed), None, jnp.asarray(seg)))
    np.testing.assert_allclose(out[0, 8:], base[0, 8:], atol=1e-6)
    assert np.abs(out[0, :8] - base[0, :8]).max() > 1e-3
