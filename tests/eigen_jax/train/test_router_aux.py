"""The MoE load-balancing term in the SFT and GRPO losses: exactly `coef * aux` on one
micro-batch, statistics that add up over accumulated micro-batches, metrics for the log."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eigen_jax import models
from eigen_jax.models import moe
from eigen_jax.rl.learner_fns import make_grpo_loss, summarise
from eigen_jax.train import state as state_lib
from eigen_jax.train.router_aux import router_metrics
from eigen_jax.train.sft_loss import sft_loss


def _batch(b=4, t=32, seed=0):
    rng = np.random.default_rng(seed)
    seg = np.ones((b, t), np.int32)
    seg[1, 20:] = 0
    mask = (rng.random((b, t)) > 0.4).astype(np.float32) * (seg > 0)
    return {
        "tokens": jnp.asarray(rng.integers(0, 256, (b, t)), jnp.int32),
        "positions": jnp.tile(jnp.arange(t, dtype=jnp.int32), (b, 1)),
        "segment_ids": jnp.asarray(seg),
        "loss_mask": jnp.asarray(mask),
        "advantages": jnp.asarray(rng.normal(size=(b, 1)) * mask, jnp.float32),
        "behaviour_logprobs": jnp.asarray(-rng.random((b, t)) * 3, jnp.float32),
    }


@pytest.mark.parametrize("objective", ["sft", "grpo"])
def test_aux_term_is_coef_times_balancing_loss(objective):
    model = models.Transformer(models.get_config("tiny-qwen3-moe"), rngs=nnx.Rngs(0))
    batch = _batch()
    normalizer = batch["loss_mask"][:, 1:].sum()

    def loss(coef):
        if objective == "sft":
            return sft_loss(model, batch, normalizer, router_aux_loss_coef=coef)
        return make_grpo_loss(with_entropy=False, router_aux_loss_coef=coef)(
            model, batch, normalizer
        )

    (l0, sums), (l1, _) = loss(0.0), loss(0.5)
    stats = {k: sums[f"router_{k}"] for k in ("counts", "probs", "tokens")}
    # both sparse layers count every real token (row 1 has 12 padding tokens)
    assert float(stats["tokens"]) == 2 * float((batch["segment_ids"] > 0).sum())
    np.testing.assert_allclose(
        float(l1 - l0), 0.5 * float(moe.load_balancing_loss(stats)), rtol=1e-5
    )
    assert float(moe.load_balancing_loss(stats)) > 0


def test_statistics_add_up_over_micro_batches():
    model = models.Transformer(models.get_config("tiny-qwen3-moe"), rngs=nnx.Rngs(1))
    graphdef, params, rest = state_lib.split_model(model)
    import optax

    out = []
    for accum in (1, 2):
        step = state_lib.make_train_step(
            graphdef,
            rest,
            optax.sgd(0.0),
            make_grpo_loss(with_entropy=False, router_aux_loss_coef=0.01),
            grad_accum_steps=accum,
        )
        state = state_lib.init_train_state(jax.tree.map(jnp.copy, params), optax.sgd(0.0))
        out.append(jax.device_get(step(state, _batch(seed=2))[1]))
    np.testing.assert_allclose(out[0]["router_counts"], out[1]["router_counts"])
    np.testing.assert_allclose(out[0]["router_probs"], out[1]["router_probs"], rtol=1e-5)
    logged = summarise(out[1])
    assert logged["router/max_load"] >= 1.0 >= logged["router/min_load"] > 0
    assert router_metrics({"loss": 1.0}) == {}  # a dense model logs nothing extra
