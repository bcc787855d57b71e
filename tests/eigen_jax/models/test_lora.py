"""LoRA adapters: the base at init, PEFT parity (transformers + PEFT as the reference), merged
export, adapter import, MoE experts/router, sharding like the base."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from eigen_jax import models
from eigen_jax import sharding as shd
from eigen_jax.models import lora_io
from eigen_jax.models.lora import LoRA, LoraConfig, adapters_off
from eigen_jax.train import state as state_lib
from eigen_jax.train.sft_loss import sft_loss
from tests.fixtures.tiny_hf import make_tiny_hf_checkpoint

IDS = np.random.default_rng(0).integers(3, 256, (2, 12)).astype(np.int32)


def _batch(rng, rows=4, length=16, vocab=256):
    t = rng.integers(3, vocab, (rows, length)).astype(np.int32)
    return {
        "tokens": jnp.asarray(t),
        "positions": jnp.tile(jnp.arange(length), (rows, 1)),
        "segment_ids": jnp.ones((rows, length), jnp.int32),
        "loss_mask": jnp.ones((rows, length), jnp.int32),
    }


def train_adapters(model, steps=3, lr=1e-2, seed=0):
    """A few LoRA SFT steps on random tokens: (trained model, base before, base after)."""
    graphdef, params, frozen, rest = state_lib.split_trainable(model)
    tx = optax.adam(lr)
    state = state_lib.init_train_state(params, tx)
    step = state_lib.make_train_step(graphdef, rest, tx, sft_loss, frozen=frozen)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        state, _ = step(state, _batch(rng))
    return state_lib.merge(graphdef, state.params, frozen, rest), frozen


@pytest.mark.parametrize("scan", [True, False])
def test_zero_b_adapters_are_the_base(scan):
    config = models.get_config("tiny-qwen3", scan_layers=scan, remat="full")
    base = models.Transformer(config, rngs=nnx.Rngs(0))
    ref = np.asarray(base(IDS))
    model = lora_io.add_lora(base, LoraConfig(rank=4, alpha=8))
    np.testing.assert_array_equal(np.asarray(model(IDS)), ref)
    a = nnx.state(model, LoRA)["layers"]["attn"]["q_lora"]["a"].get_value()
    assert a.shape == (config.num_layers, config.hidden_size, 4) and float(jnp.abs(a).max()) > 0


def test_training_moves_only_adapters_and_adapters_off_is_the_base():
    base = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(1))
    model = lora_io.add_lora(base, LoraConfig(rank=4, alpha=8))
    base_before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    ref = np.asarray(base(IDS))
    trained, frozen = train_adapters(model)
    for x, y in zip(jax.tree.leaves(base_before), jax.tree.leaves(frozen)):
        np.testing.assert_array_equal(x, np.asarray(y))
    b = nnx.state(trained, LoRA)["layers"]["mlp"]["down_lora"]["b"].get_value()
    assert float(jnp.abs(b).max()) > 0
    assert np.abs(np.asarray(trained(IDS)) - ref).max() > 1e-3
    with adapters_off():
        np.testing.assert_array_equal(np.asarray(jax.jit(lambda m: m(IDS))(trained)), ref)


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory):
    return make_tiny_hf_checkpoint(str(tmp_path_factory.mktemp("qwen3")), "qwen3", seed=3)


def test_peft_loads_the_exported_adapter_and_merged_export_matches(tiny_qwen3, tmp_path):
    """An adapter trained here, exported in the PEFT layout and loaded by transformers + PEFT,
    gives our logits; the merged checkpoint (plain transformers) gives them too."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, _ = models.from_pretrained(tiny_qwen3)
    lora = LoraConfig(
        rank=4,
        alpha=16,
        targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    )
    trained, _ = train_adapters(lora_io.add_lora(base, lora), steps=3, lr=3e-2)
    ours = np.asarray(trained(IDS))
    assert np.abs(ours - np.asarray(base(IDS))).max() > 1e-2  # the adapter matters
    lora_io.save_adapter(trained, str(tmp_path / "adapter"), base_model=tiny_qwen3)
    hf = AutoModelForCausalLM.from_pretrained(tiny_qwen3, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(hf, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        theirs = peft_model(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)

    merged = lora_io.merge_adapters(trained)
    models.save_pretrained(merged, merged.config, str(tmp_path / "merged"))
    hf_merged = AutoModelForCausalLM.from_pretrained(
        str(tmp_path / "merged"), dtype=torch.float32
    ).eval()
    with torch.no_grad():
        plain = hf_merged(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(plain, theirs, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(merged(IDS)), ours, atol=1e-4, rtol=0)

    # Import to continue training: the same adapter values, the same function.
    again = lora_io.load_adapter(base, str(tmp_path / "adapter"))
    assert again.config.lora.rank == 4 and again.config.lora.alpha == 16
    np.testing.assert_allclose(np.asarray(again(IDS)), ours, atol=1e-6, rtol=0)


def test_save_pretrained_refuses_unmerged_adapters(tmp_path):
    model = lora_io.add_lora(
        models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(0)), LoraConfig(rank=2)
    )
    with pytest.raises(ValueError, match="LoRA"):
        models.save_pretrained(model, model.config, str(tmp_path))


def test_moe_expert_and_router_adapters_merge_exactly():
    """Experts/router adapters run merged into the weights; the merged export is the same
    function, the zero-B model the base; PEFT export refuses them with one clear line."""
    config = models.get_config("tiny-qwen3-moe", moe_impl="dense")
    base = models.Transformer(config, rngs=nnx.Rngs(0))
    ref = np.asarray(base(IDS))
    lora = LoraConfig(rank=2, targets=("q_proj", "o_proj", "experts", "router"))
    model = lora_io.add_lora(base, lora)
    np.testing.assert_array_equal(np.asarray(model(IDS)), ref)
    state = nnx.state(model, LoRA)
    assert state["layers"]["moe"]["gate_lora"]["a"].get_value().shape == (
        config.num_layers,
        config.num_experts,
        config.hidden_size,
        2,
    )
    nnx.update(model, jax.tree.map(lambda x: x + 0.05, state))
    out = np.asarray(model(IDS))
    assert np.abs(out - ref).max() > 1e-3
    np.testing.assert_allclose(np.asarray(lora_io.merge_adapters(model)(IDS)), out, atol=2e-5)
    with pytest.raises(ValueError, match="no PEFT layout"):
        lora_io.save_adapter(model, "/nonexistent")


def test_adapters_shard_like_their_base_and_the_sharded_step_matches():
    """On a (1, 2, 4) mesh A follows its base's input axes and B its output axes; one LoRA
    step there equals the same step on one device."""
    config = models.get_config("tiny-qwen3", remat="full")
    lora = LoraConfig(rank=4)
    mesh = shd.make_mesh((1, 2, 4))
    rng = np.random.default_rng(5)
    batch = _batch(rng, rows=4)

    def one_step(mesh):
        base = models.Transformer(config, rngs=nnx.Rngs(2))
        if mesh is not None:
            base = shd.shard_model(base, mesh)
        model = lora_io.add_lora(base, lora, mesh)
        graphdef, params, frozen, rest = state_lib.split_trainable(model)
        tx = optax.adam(1e-2)
        state = state_lib.init_train_state(params, tx, mesh)
        step = state_lib.make_train_step(
            graphdef,
            rest,
            tx,
            sft_loss,
            mesh=mesh,
            frozen=frozen,
            state_sharding=None if mesh is None else state_lib.state_shardings(state),
        )
        b = batch if mesh is None else jax.device_put(batch, shd.batch_sharding(mesh, 2))
        state, metrics = step(state, b)
        return state.params, float(metrics["loss"])

    sharded, loss_sharded = one_step(mesh)
    q = sharded["layers"]["attn"]["q_lora"]
    assert q["a"].get_value().sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", None)
    assert q["b"].get_value().sharding.spec == jax.sharding.PartitionSpec(
        None, None, "tensor", None
    )
    single, loss_single = one_step(None)
    np.testing.assert_allclose(loss_sharded, loss_single, rtol=1e-5)
    for x, y in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=2e-5)


def test_bad_config_is_one_clear_error():
    with pytest.raises(ValueError, match="targets"):
        LoraConfig(targets=("qproj",))
    with pytest.raises(ValueError, match="rank"):
        LoraConfig(rank=0)


def test_adapter_dropout_only_under_a_training_key():
    """Dropout acts only inside `dropout_key` (the train step's); evaluation and sampling trace
    without one and are deterministic. With zero-B adapters dropout cannot change the output."""
    from eigen_jax.models.lora import dropout_key

    base = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(0))
    model = lora_io.add_lora(base, LoraConfig(rank=4, dropout=0.5))
    fwd = jax.jit(lambda m, key=None: m(IDS) if key is None else _with_key(m, key))

    def _with_key(m, key):
        with dropout_key(key):
            return m(IDS)

    np.testing.assert_array_equal(np.asarray(fwd(model, jax.random.key(0))), np.asarray(base(IDS)))
    nnx.update(model, jax.tree.map(lambda x: x + 0.05, nnx.state(model, LoRA)))
    plain = np.asarray(fwd(model))
    np.testing.assert_array_equal(plain, np.asarray(fwd(model)))
    a, b = np.asarray(fwd(model, jax.random.key(1))), np.asarray(fwd(model, jax.random.key(2)))
    assert np.abs(a - plain).max() > 1e-3 and np.abs(a - b).max() > 1e-3
