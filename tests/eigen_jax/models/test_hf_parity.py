"""Logit and greedy-decoding parity with transformers (torch float32) for every family."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from eigen_jax.models import from_pretrained
from tests.fixtures.tiny_hf import TINY_FAMILIES

FAMILIES = sorted(TINY_FAMILIES)


def _ids(shape, seed=0, vocab=256):
    return np.random.RandomState(seed).randint(3, vocab, shape).astype(np.int32)


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(family, tiny_checkpoints, tiny_references):
    model, _ = from_pretrained(tiny_checkpoints[family])
    # Positions up to 95 pass the tiny llama's original context (64), so llama3 scaling matters.
    ids = _ids((2, 96), seed=1)
    with torch.no_grad():
        ref = tiny_references[family](torch.tensor(ids, dtype=torch.long)).logits.numpy()
    out = np.asarray(jax.jit(lambda m, x: m(x))(model, jnp.asarray(ids)))
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4, np.abs(out - ref).max()


def test_family_features_are_really_exercised(tiny_checkpoints):
    """Guards against a parity test passing because a feature silently went unused."""
    cfgs = {f: from_pretrained(tiny_checkpoints[f])[1] for f in FAMILIES}
    assert cfgs["llama"].rope_scaling["rope_type"] == "llama3"
    assert not cfgs["llama"].tie_word_embeddings and not cfgs["qwen3"].tie_word_embeddings
    assert cfgs["qwen2"].attention_bias and cfgs["qwen2"].tie_word_embeddings
    assert cfgs["qwen3"].qk_norm and cfgs["qwen3"].head_dim * 4 != cfgs["qwen3"].hidden_size


def _greedy_with_cache(model, prompt, steps):
    """Greedy decoding through the KV cache: one prefill, then one token per step."""
    b, t = prompt.shape
    cache = model.init_cache(b, t + steps)
    step = jax.jit(lambda m, ids, pos, c: m(ids, positions=pos, cache=c))
    pos = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    logits, cache = step(model, jnp.asarray(prompt), pos, cache)
    tokens = [jnp.argmax(logits[:, -1], -1).astype(jnp.int32)]
    for i in range(steps - 1):
        pos = jnp.full((b, 1), t + i, jnp.int32)
        logits, cache = step(model, tokens[-1][:, None], pos, cache)
        tokens.append(jnp.argmax(logits[:, -1], -1).astype(jnp.int32))
    return np.stack([np.asarray(x) for x in tokens], axis=1)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_continuation_matches_transformers(family, tiny_checkpoints, tiny_references):
    model, _ = from_pretrained(tiny_checkpoints[family])
    prompt = _ids((2, 12), seed=2)
    with torch.no_grad():
        ref = (
            tiny_references[family]
            .generate(
                torch.tensor(prompt, dtype=torch.long),
                max_new_tokens=20,
                min_new_tokens=20,
                do_sample=False,
                pad_token_id=0,
            )[:, prompt.shape[1] :]
            .numpy()
        )
    ours = _greedy_with_cache(model, prompt, 20)
    np.testing.assert_array_equal(ours, ref)
