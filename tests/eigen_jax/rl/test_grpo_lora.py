"""GRPO with LoRA: at step 0 the loss is the full-parameter step's on the same batch, the step
moves only the adapters, the KL reference is the base (adapters off), and the sampler's weights
share the frozen base's buffers (no second copy)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eigen_jax import models
from eigen_jax import sharding as shd
from eigen_jax.models import lora_io
from eigen_jax.models.lora import LoRA, LoraConfig
from eigen_jax.rl.config import GRPOConfig
from eigen_jax.rl.learner import GRPOLearner
from eigen_jax.sampling import Engine


def _grpo_batch(rows=4, length=24, seed=0):
    rng = np.random.default_rng(seed)
    mask = (rng.random((rows, length)) > 0.4).astype(np.int32)
    mask[:, 0] = 0
    return {
        "tokens": jnp.asarray(rng.integers(3, 256, (rows, length)), jnp.int32),
        "positions": jnp.tile(jnp.arange(length, dtype=jnp.int32), (rows, 1)),
        "segment_ids": jnp.ones((rows, length), jnp.int32),
        "loss_mask": jnp.asarray(mask),
        "advantages": jnp.asarray(rng.normal(size=(rows, 1)) * mask, jnp.float32),
        "behaviour_logprobs": jnp.asarray(-rng.random((rows, length)) * 3, jnp.float32),
    }


def _learner(model, mesh, kl_coef):
    config = GRPOConfig(learning_rate=1e-3, kl_coef=kl_coef, share_prefix=False, log_entropy=False)
    return GRPOLearner.create(
        model, model.config, mesh, config, num_steps=10, max_len=64, temperature=1.0
    )


def test_lora_grpo_step_matches_full_step_at_init_and_moves_only_adapters():
    mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])
    config = models.get_config("tiny-qwen3")
    base = shd.shard_model(models.Transformer(config, rngs=nnx.Rngs(0)), mesh)
    batch = jax.device_put(_grpo_batch(), shd.batch_sharding(mesh, 2))
    lora_model = lora_io.add_lora(base, LoraConfig(rank=4, alpha=8), mesh)
    base_before = jax.tree.map(np.asarray, nnx.state(lora_model, nnx.Param))

    full_state, full = _learner(base, mesh, kl_coef=0.1)
    lora_state, learner = _learner(lora_model, mesh, kl_coef=0.1)
    # The KL reference: the full learner's copy of the initial weights; LoRA's, the base itself.
    ref_full = full.logprob_fn(full.ref_params, batch)
    assert callable(learner.ref_params)
    ref_lora = learner.ref_params(lora_state.params, batch)
    np.testing.assert_allclose(np.asarray(ref_lora), np.asarray(ref_full), atol=1e-6)
    batch = dict(batch, ref_logprobs=ref_full)

    engine = Engine(lora_model, num_slots=2, max_len=64, mesh=mesh)
    _, metrics_full = full.step_fn(full_state, batch)
    lora_state, metrics = learner.step_fn(lora_state, batch)
    np.testing.assert_allclose(float(metrics["loss"]), float(metrics_full["loss"]), rtol=1e-6)

    # Only the adapters moved: the frozen base is bit-identical, every B left zero.
    _, _, frozen, _ = nnx.split(lora_model, LoRA, nnx.Param, ...)
    for x, y in zip(jax.tree.leaves(base_before), jax.tree.leaves(frozen)):
        np.testing.assert_array_equal(x, np.asarray(y))
    bs = [v for p, v in nnx.to_flat_state(lora_state.params) if p[-1] == "b"]
    assert bs and all(float(jnp.abs(b.get_value()).max()) > 0 for b in bs)

    # The sampler gets the new adapters in place; its base arrays ARE the learner's frozen base.
    learner.sync_sampler(engine, lora_state)
    engine_state = dict(nnx.to_flat_state(engine.params))
    for path, var in nnx.to_flat_state(frozen):
        assert engine_state[path].get_value() is var.get_value(), path
    for path, var in nnx.to_flat_state(lora_state.params):
        np.testing.assert_array_equal(
            np.asarray(engine_state[path].get_value()), np.asarray(var.get_value())
        )
