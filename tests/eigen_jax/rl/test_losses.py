"""GRPO loss against a NumPy reference: clipping, IS-cap masking, token-mean, k3 KL, gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eigen_jax.rl import losses


def np_grpo_loss(logp, old, adv, mask, behav, eps_lo, eps_hi, cap):
    mask = mask.astype(np.float64).copy()
    w = np.exp(old - behav)
    mask[w > cap] = 0.0
    ratio = np.exp(logp - old)
    obj = np.minimum(ratio * adv, np.clip(ratio, 1 - eps_lo, 1 + eps_hi) * adv)
    return -(w * obj * mask).sum() / max(mask.sum(), 1.0), mask


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    shape = (3, 7)
    old = rng.normal(-2, 0.5, shape)
    logp = old + rng.normal(0, 0.6, shape)  # some ratios leave the clip range
    behav = old + rng.normal(0, 0.8, shape)
    behav[0, 2] = old[0, 2] - 3.0  # w = e^3 > 5: masked by the IS cap
    mask = (rng.random(shape) > 0.3).astype(np.float32)
    mask[0, 2] = 1.0
    mask[2, :] = 0.0
    mask[2, 4] = 1.0  # a single-token turn
    adv = np.repeat(np.array([[1.5], [-0.7], [0.9]]), shape[1], 1) * mask
    return logp, old, adv, mask, behav


def test_grpo_loss_matches_numpy(batch):
    logp, old, adv, mask, behav = batch
    loss, m = losses.get("grpo")(
        jnp.asarray(logp),
        jnp.asarray(old),
        jnp.asarray(adv),
        jnp.asarray(mask),
        behaviour_logprobs=jnp.asarray(behav),
        eps_low=0.2,
        eps_high=0.3,
        is_cap=5.0,
    )
    ref, ref_mask = np_grpo_loss(logp, old, adv, mask, behav, 0.2, 0.3, 5.0)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    assert float(m["policy_tokens"]) == ref_mask.sum()
    assert float(m["is_mask_fraction"]) > 0
    assert 0 < float(m["clip_fraction"]) < 1


def test_grpo_gradient_matches_finite_difference(batch):
    logp, old, adv, mask, behav = batch
    f = lambda lp: losses.grpo_loss(
        lp,
        jnp.asarray(old),
        jnp.asarray(adv),
        jnp.asarray(mask),
        behaviour_logprobs=jnp.asarray(behav),
        eps_low=0.2,
        eps_high=0.3,
    )[0]
    g = np.asarray(
        jax.grad(f)(jnp.asarray(logp, jnp.float64 if jax.config.x64_enabled else jnp.float32))
    )
    # analytic: d/dlogp of -w*min(..) is -w*ratio*A where the unclipped branch is active, else 0
    _, m = np_grpo_loss(logp, old, adv, mask, behav, 0.2, 0.3, 5.0)
    ratio, w = np.exp(logp - old), np.exp(old - behav)
    active = ratio * adv <= np.clip(ratio, 0.8, 1.3) * adv
    expect = np.where(active, -w * ratio * adv, 0.0) * m / m.sum()
    np.testing.assert_allclose(g, expect, rtol=1e-4, atol=1e-6)
    assert np.all(g[mask == 0] == 0)


def test_on_policy_loss_is_minus_mean_advantage():
    # ratio = 1 and no behaviour correction: loss = -mean of A over policy tokens
    a = jnp.array([[1.0, 1.0, 0.0], [-2.0, 0.0, 0.0]])
    mask = jnp.array([[1, 1, 0], [1, 0, 0]])
    lp = jnp.full((2, 3), -1.0)
    loss, _ = losses.grpo_loss(lp, lp, a, mask)
    np.testing.assert_allclose(float(loss), -(1 + 1 - 2) / 3, rtol=1e-6)
    loss_n, _ = losses.grpo_loss(lp, lp, a, mask, normalizer=6.0)
    np.testing.assert_allclose(float(loss_n), 0.0, atol=1e-7)


def test_kl_k3_matches_numpy_and_is_nonnegative():
    rng = np.random.default_rng(1)
    lp, ref = rng.normal(-2, 1, (4, 5)), rng.normal(-2, 1, (4, 5))
    d = ref - lp
    np.testing.assert_allclose(
        losses.kl_k3(jnp.asarray(lp), jnp.asarray(ref)), np.exp(d) - d - 1, rtol=1e-5
    )
    mask = np.ones((4, 5))
    loss0, m = losses.grpo_loss(
        jnp.asarray(lp),
        jnp.asarray(lp),
        jnp.zeros((4, 5)),
        jnp.asarray(mask),
        ref_logprobs=jnp.asarray(ref),
        kl_coef=0.5,
    )
    np.testing.assert_allclose(float(loss0), 0.5 * (np.exp(d) - d - 1).mean(), rtol=1e-5)
    assert float(m["kl"]) >= 0


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown policy loss"):
        losses.get("ppo-nope")
