"""Policy-gradient losses: pure functions of per-token arrays, registered by name.

Every array is `[batch, length]`; `mask` selects policy-generated tokens. Three log-prob arrays
take part (decoupled PPO, as in the authors' AReaL code):
- `logprobs`: the policy being optimised (carries the gradient);
- `old_logprobs`: the learner's policy at rollout time (π_old); ρ = exp(logprobs - old_logprobs)
  is clipped to [1 - ε_low, 1 + ε_high];
- `behaviour_logprobs`: what the sampler actually used. The behaviour importance weight
  w = exp(old_logprobs - behaviour_logprobs) corrects for sampler/learner mismatch; tokens with
  w > `is_cap` are masked out (not clipped), the rest are weighted by w.
The loss is a token-level mean over all policy tokens in the batch (or over `normalizer` tokens,
so gradient accumulation over micro-batches can use the global count).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from eigen_jax.rl.registry import Registry

LossFn = Callable[..., tuple[jnp.ndarray, dict[str, jnp.ndarray]]]
_REGISTRY: Registry[LossFn] = Registry("policy loss")
register = _REGISTRY.register
get = _REGISTRY.get
names = _REGISTRY.names


def kl_k3(logprobs: jnp.ndarray, ref_logprobs: jnp.ndarray) -> jnp.ndarray:
    """Schulman's k3 estimator of KL(π || π_ref): exp(Δ) - Δ - 1 with Δ = ref - logp (≥ 0)."""
    delta = ref_logprobs - logprobs
    return jnp.exp(delta) - delta - 1.0


@register("grpo")
def grpo_loss(
    logprobs: jnp.ndarray,
    old_logprobs: jnp.ndarray,
    advantages: jnp.ndarray,
    mask: jnp.ndarray,
    *,
    behaviour_logprobs: jnp.ndarray | None = None,
    ref_logprobs: jnp.ndarray | None = None,
    eps_low: float = 0.4,
    eps_high: float = 0.4,
    is_cap: float | None = 5.0,
    kl_coef: float = 0.0,
    normalizer: jnp.ndarray | float | None = None,
):
    """Clipped surrogate, token-mean. Returns (loss, metrics)."""
    mask = mask.astype(jnp.float32)
    old_logprobs = jax.lax.stop_gradient(old_logprobs)
    if behaviour_logprobs is not None:
        w = jnp.exp(old_logprobs - jax.lax.stop_gradient(behaviour_logprobs))
        is_masked = (w > is_cap) if is_cap is not None else jnp.zeros_like(w, bool)
        is_masked = is_masked & (mask > 0)
        mask = mask * (~is_masked)
        w = jnp.where(is_masked, 0.0, w)
    else:
        w = jnp.ones_like(logprobs)
        is_masked = jnp.zeros_like(logprobs, bool)
    ratio = jnp.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * advantages
    per_token = -w * jnp.minimum(unclipped, clipped)
    n_policy = mask.sum()
    denom = jnp.maximum(
        n_policy if normalizer is None else jnp.asarray(normalizer, jnp.float32), 1.0
    )
    loss = (per_token * mask).sum() / denom
    metrics = {
        "pg_loss": loss,
        "clip_fraction": ((clipped < unclipped).astype(jnp.float32) * mask).sum()
        / jnp.maximum(n_policy, 1.0),
        "is_mask_fraction": is_masked.sum() / jnp.maximum(n_policy + is_masked.sum(), 1.0),
        "ratio_mean": (ratio * mask).sum() / jnp.maximum(n_policy, 1.0),
        "policy_tokens": n_policy,
    }
    if ref_logprobs is not None:
        kl = (kl_k3(logprobs, jax.lax.stop_gradient(ref_logprobs)) * mask).sum() / denom
        metrics["kl"] = kl
        loss = loss + kl_coef * kl
    metrics["loss"] = loss
    return loss, metrics
