"""The pjit train step: sharded == single device, grad accumulation == full batch, loss by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from eigen_jax import models
from eigen_jax import sharding as shd
from eigen_jax.train import state as state_lib
from eigen_jax.train.optimizer import make_optimizer, make_schedule
from eigen_jax.train.sft_loss import sft_loss


def make_batch(seed=0, b=8, t=32, vocab=256):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (b, t)).astype(np.int32)
    seg = np.ones((b, t), np.int32)
    seg[:, t // 2 :] = 2  # two packed segments per row
    seg[0, -5:] = 0  # padding
    pos = np.concatenate([np.arange(t // 2), np.arange(t - t // 2)])[None].repeat(b, 0)
    mask = (rng.random((b, t)) > 0.4).astype(np.int32) * (seg > 0)
    return {
        "tokens": tokens,
        "positions": pos.astype(np.int32),
        "segment_ids": seg,
        "loss_mask": mask,
    }


def run_steps(mesh_shape, n=2, accum=1, sgd=True):
    """Plain SGD keeps parameter differences proportional to gradient differences (Adam's
    normalisation would magnify float noise on near-zero gradients into lr-sized steps)."""
    mesh = shd.make_mesh(mesh_shape, devices=jax.devices()[: int(np.prod(mesh_shape))])
    config = models.get_config("tiny-qwen3")
    model = shd.shard_model(models.Transformer(config, rngs=nnx.Rngs(0)), mesh)
    tx = (
        optax.sgd(0.5)
        if sgd
        else make_optimizer(make_schedule(1e-2, warmup_steps=1, total_steps=10))
    )
    graphdef, params, rest = state_lib.split_model(model)
    state = state_lib.init_train_state(params, tx, mesh)
    step = state_lib.make_train_step(
        graphdef,
        rest,
        tx,
        sft_loss,
        mesh=mesh,
        state_sharding=state_lib.state_shardings(state),
        grad_accum_steps=accum,
    )
    losses = []
    for i in range(n):
        b = {k: jax.device_put(v, shd.batch_sharding(mesh, 2)) for k, v in make_batch(i).items()}
        state, m = step(state, b)
        losses.append(float(m["loss"]))
    return state, losses


@pytest.mark.parametrize("prompt_weight", [None, 0.25])
def test_loss_equals_hand_computed_masked_cross_entropy(prompt_weight):
    """Binary role masks, and float masks weighting context tokens (SFT `prompt_loss_weight`)."""
    config = models.get_config("tiny-qwen3")
    model = models.Transformer(config, rngs=nnx.Rngs(0))
    b = make_batch()
    if prompt_weight is not None:
        b["loss_mask"] = np.where(b["loss_mask"] > 0, 1.0, prompt_weight).astype(np.float32) * (
            b["segment_ids"] > 0
        )
    loss, _ = sft_loss(
        model,
        {k: jnp.asarray(v) for k, v in b.items()},
        jnp.asarray(b["loss_mask"][:, 1:].sum(), jnp.float32),
        chunk_size=8,
    )
    logits = np.asarray(
        model(jnp.asarray(b["tokens"]), jnp.asarray(b["positions"]), jnp.asarray(b["segment_ids"])),
        np.float64,
    )
    logp = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    tgt = b["tokens"][:, 1:]
    lp = np.take_along_axis(logp[:, :-1], tgt[..., None], -1)[..., 0]
    seg = b["segment_ids"]
    m = b["loss_mask"][:, 1:] * (seg[:, 1:] == seg[:, :-1]) * (seg[:, 1:] > 0)
    expect = -(lp * m).sum() / b["loss_mask"][:, 1:].sum()
    np.testing.assert_allclose(float(loss), expect, rtol=1e-5)


def test_sharded_step_equals_single_device():
    ref_state, ref_losses = run_steps((1, 1, 1))
    state, losses = run_steps((2, 2, 2))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    emb = state.params["embed"]
    spec = emb.get_value().sharding.spec if hasattr(emb, "get_value") else emb.sharding.spec
    assert any(s is not None for s in spec), f"embedding is not sharded: {spec}"


def test_grad_accumulation_equals_full_batch():
    full, fl = run_steps((1, 8, 1), accum=1)
    acc, al = run_steps((1, 8, 1), accum=2)
    np.testing.assert_allclose(al, fl, rtol=1e-5)
    _, adam_losses = run_steps((1, 8, 1), n=3, sgd=False)  # the real optimizer runs sharded too
    assert np.isfinite(adam_losses).all() and adam_losses[-1] != adam_losses[0]
    for a, b in zip(jax.tree.leaves(acc.params), jax.tree.leaves(full.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
