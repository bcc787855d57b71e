"""Shared fixtures for the sampler tests: a tiny model with peaked logits and cache-free
reference computations (plain forward passes, no KV cache) to compare the sampler against."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eigen_jax.models import Transformer, get_config

REF_LEN = 64  # one padded length for every reference forward pass (a single compilation)


def redrawn_model(preset: str = "tiny-qwen3", seed: int = 0) -> Transformer:
    """A tiny model whose weights are N(0, 0.1^2) (norm scales ~1), not the 0.02 init: larger
    weights give peaked, well-separated logits, so greedy parity cannot pass by near-ties."""
    model = Transformer(get_config(preset), rngs=nnx.Rngs(seed))
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    rng = np.random.RandomState(seed + 1)
    redrawn = []
    for x in leaves:
        x = np.asarray(x)
        centre = 1.0 if x.ndim == 1 and np.all(x == 1) else 0.0  # RMSNorm scales stay near 1
        redrawn.append(jnp.asarray(centre + 0.1 * rng.standard_normal(x.shape), x.dtype))
    nnx.update(model, jax.tree.unflatten(treedef, redrawn))
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return redrawn_model()


@jax.jit
def _padded_logits(model, ids, segment_ids):
    return model(ids, segment_ids=segment_ids)


def reference_logits(model, sequences):
    """Per sequence, float64 logits [len, V] from one cache-free forward pass."""
    ids = np.zeros((len(sequences), REF_LEN), np.int32)
    seg = np.zeros((len(sequences), REF_LEN), np.int32)
    for i, s in enumerate(sequences):
        assert len(s) <= REF_LEN
        ids[i, : len(s)], seg[i, : len(s)] = s, 1
    out = np.asarray(_padded_logits(model, jnp.asarray(ids), jnp.asarray(seg)), np.float64)
    return [out[i, : len(s)] for i, s in enumerate(sequences)]


def reference_greedy(model, prompts, num_tokens):
    """Greedy continuation recomputed from scratch (full forward, no cache) at every step."""
    seqs = [list(p) for p in prompts]
    for _ in range(num_tokens):
        for s, logits in zip(seqs, reference_logits(model, seqs)):
            s.append(int(np.argmax(logits[-1])))
    return [s[len(p) :] for s, p in zip(seqs, prompts)]


def numpy_sampling_logprobs(logits, temperature=1.0, top_k=0, top_p=1.0):
    """Independent float64 re-implementation of HF-order temperature -> top-k -> top-p."""
    logits = np.asarray(logits, np.float64)
    if temperature == 0:
        z = logits - logits.max()
        return z - np.log(np.exp(z).sum())
    z = logits / temperature
    order = np.argsort(-z, kind="stable")
    keep = np.zeros(z.shape, bool)
    k = top_k if top_k > 0 else len(z)
    top = order[:k]
    p = np.exp(z[top] - z[top].max())
    p /= p.sum()
    mass = 0.0
    for idx, prob in zip(top, p):
        if mass >= top_p:
            break
        keep[idx] = True
        mass += prob
    out = np.full(z.shape, -np.inf)
    kz = z[keep]
    out[keep] = kz - kz.max() - np.log(np.exp(kz - kz.max()).sum())
    return out


def random_prompts(lengths, seed=0, vocab=256):
    rng = np.random.RandomState(seed)
    return [rng.randint(3, vocab, n).tolist() for n in lengths]
