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
