"""μ = 1 shortcut: without `old_logprobs` the loss and gradient equal those with π_old recomputed."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eigen_jax import models
from eigen_jax.rl.grpo_step import make_grpo_loss, make_logprob_fn
from eigen_jax.train import state as state_lib


def test_missing_old_logprobs_means_current_policy():
    model = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(0))
    graphdef, params, rest = state_lib.split_model(model)
    rng = np.random.default_rng(0)
    b, t = 3, 24
    mask = (rng.random((b, t)) > 0.5).astype(np.int32)
    batch = {"tokens": jnp.asarray(rng.integers(0, 256, (b, t)), jnp.int32),
             "positions": jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1)),
             "segment_ids": jnp.ones((b, t), jnp.int32), "loss_mask": jnp.asarray(mask),
             "advantages": jnp.asarray(rng.normal(size=(b, 1)) * mask, jnp.float32),
             "behaviour_logprobs": jnp.asarray(-rng.random((b, t)) * 3, jnp.float32)}
    old = make_logprob_fn(graphdef, rest)(params, batch)
    loss_fn = make_grpo_loss(with_entropy=False)

    def value_and_grad(with_old):
        bb = dict(batch, old_logprobs=old) if with_old else batch
        f = lambda p: loss_fn(nnx.merge(graphdef, p, rest), bb, jnp.float32(mask.sum()))[0]
        return jax.value_and_grad(f)(params)

    (l1, g1), (l0, g0) = value_and_grad(True), value_and_grad(False)
    np.testing.assert_allclose(float(l0), float(l1), rtol=1e-5)
    for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-4, atol=1e-7)


def test_scoring_only_policy_positions_gives_the_same_loss_and_gradient():
    """`score_index` (project only the positions the loss reads) changes nothing but speed:
    same log-probs at policy positions, same loss, same gradient, entropy included — also for a
    row with no policy token and rows padded past their own count."""
    from eigen_jax.rl.batching import score_index
    model = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(1))
    graphdef, params, rest = state_lib.split_model(model)
    rng = np.random.default_rng(1)
    b, t = 4, 40
    mask = (rng.random((b, t)) > 0.6).astype(np.int32)
    mask[:, 0] = 0
    mask[2] = 0                      # a row with no policy token
    mask[3, 5:] = 1                  # the longest row decides K; the others are padded
    mask[0, 1] = 1                   # row 0 scores index 0, which its padding also points at
    batch = {"tokens": jnp.asarray(rng.integers(0, 256, (b, t)), jnp.int32),
             "positions": jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1)),
             "segment_ids": jnp.ones((b, t), jnp.int32), "loss_mask": jnp.asarray(mask),
             "advantages": jnp.asarray(rng.normal(size=(b, 1)) * mask, jnp.float32),
             "behaviour_logprobs": jnp.asarray(-rng.random((b, t)) * 3, jnp.float32)}
    index = score_index(mask, minimum=4)
    assert mask[:, 1:].sum(1).max() <= index.shape[1] <= t - 1
    sparse = dict(batch, score_index=jnp.asarray(index))
    lp_dense = np.asarray(make_logprob_fn(graphdef, rest)(params, batch))
    lp_sparse = np.asarray(make_logprob_fn(graphdef, rest)(params, sparse))
    np.testing.assert_allclose(lp_sparse[mask > 0], lp_dense[mask > 0], atol=1e-5)
    assert np.all(lp_sparse[mask == 0] == 0)
    loss_fn = make_grpo_loss(with_entropy=True)

    def value_and_grad(bb):
        f = lambda p: loss_fn(nnx.merge(graphdef, p, rest), bb, jnp.float32(mask.sum()))
        return jax.value_and_grad(f, has_aux=True)(params)

    ((l0, s0), g0), ((l1, s1), g1) = value_and_grad(batch), value_and_grad(sparse)
    np.testing.assert_allclose(float(l1), float(l0), rtol=1e-5)
    np.testing.assert_allclose(float(s1["entropy_sum"]), float(s0["entropy_sum"]), rtol=1e-5)
    for a, c in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-4, atol=1e-6)
