"""μ = 1 shortcut: without `old_logprobs` the loss and gradient equal those with π_old recomputed."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eigen_jax import models
from eigen_jax.rl.learner_fns import make_grpo_loss, make_logprob_fn
from eigen_jax.train import state as state_lib


def test_missing_old_logprobs_means_current_policy():
    model = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(0))
    graphdef, params, rest = state_lib.split_model(model)
    rng = np.random.default_rng(0)
    b, t = 3, 24
    mask = (rng.random((b, t)) > 0.5).astype(np.int32)
    batch = {
        "tokens": jnp.asarray(rng.integers(0, 256, (b, t)), jnp.int32),
        "positions": jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1)),
        "segment_ids": jnp.ones((b, t), jnp.int32),
        "loss_mask": jnp.asarray(mask),
        "advantages": jnp.asarray(rng.normal(size=(b, 1)) * mask, jnp.float32),
        "behaviour_logprobs": jnp.asarray(-rng.random((b, t)) * 3, jnp.float32),
    }
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
    from eigen_jax.rl.train_batch import score_index

    model = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(1))
    graphdef, params, rest = state_lib.split_model(model)
    rng = np.random.default_rng(1)
    b, t = 4, 40
    mask = (rng.random((b, t)) > 0.6).astype(np.int32)
    mask[:, 0] = 0
    mask[2] = 0  # a row with no policy token
    mask[3, 5:] = 1  # the longest row decides K; the others are padded
    mask[0, 1] = 1  # row 0 scores index 0, which its padding also points at
    batch = {
        "tokens": jnp.asarray(rng.integers(0, 256, (b, t)), jnp.int32),
        "positions": jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1)),
        "segment_ids": jnp.ones((b, t), jnp.int32),
        "loss_mask": jnp.asarray(mask),
        "advantages": jnp.asarray(rng.normal(size=(b, 1)) * mask, jnp.float32),
        "behaviour_logprobs": jnp.asarray(-rng.random((b, t)) * 3, jnp.float32),
    }
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


def test_a_grpo_step_moves_each_trajectory_the_way_its_advantage_says():
    """End to end from `Episode`s through `make_train_batch` (both layouts) and the GRPO loss:
    one small gradient step raises the log-likelihood of the positive-advantage trajectory's
    policy tokens and lowers the negative one's, measured independently by a full forward pass
    and a NumPy log-softmax over each trajectory alone (a sign or off-by-one error in the batch
    alignment would fail this)."""
    from eigen_jax.rl.episode import Episode
    from eigen_jax.rl.train_batch import make_train_batch

    model = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(2))
    graphdef, params, rest = state_lib.split_model(model)
    rng = np.random.default_rng(2)

    def episode(i, n=48):
        mask = np.zeros(n, bool)
        mask[10:18] = mask[30:40] = True  # two policy turns
        return Episode(
            task_id="t",
            group_id=0,
            sample_index=i,
            tokens=rng.integers(0, 256, n).astype(np.int32),
            policy_mask=mask,
            sampler_logprobs=np.where(mask, -1.0, 0.0),
            policy_turns=[(10, 18), (30, 40)],
            reward=float(i == 0),
            finish_reason="user_stop",
            messages=[],
        )

    eps = [episode(0), episode(1)]

    def loglik(p, ep):  # sum of log π(policy token | prefix), independently of the batching
        logits = nnx.merge(graphdef, p, rest)(jnp.asarray(ep.tokens)[None])[0, :-1]
        logits = np.asarray(logits, np.float64)
        logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        lp = logits[np.arange(len(ep.tokens) - 1), ep.tokens[1:]] - logz
        return float(lp[ep.policy_mask[1:]].sum())

    loss_fn = make_grpo_loss(with_entropy=False)
    for layout in ("trajectory", "per_turn"):
        batch = {
            k: jnp.asarray(v)
            for k, v in make_train_batch(eps, [1.0, -1.0], layout=layout, min_len=16).items()
        }
        n = jnp.float32(np.asarray(batch["loss_mask"]).sum())
        grads = jax.grad(lambda p: loss_fn(nnx.merge(graphdef, p, rest), batch, n)[0])(params)
        stepped = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
        up = loglik(stepped, eps[0]) - loglik(params, eps[0])
        down = loglik(stepped, eps[1]) - loglik(params, eps[1])
        assert up > 0.05 and down < -0.05, (layout, up, down)
