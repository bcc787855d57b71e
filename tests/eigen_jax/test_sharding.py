"""Mesh, logical rules and placement; forward and gradient under meshes equal single-device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from eigen_jax import sharding
from eigen_jax.models import Transformer, get_config

MESHES = [(8, 1, 1), (2, 2, 2), (1, 2, 4), (1, 1, 8)]


def test_make_mesh_uses_auto_axes_and_validates():
    mesh = sharding.make_mesh((2, -1, 2))
    assert mesh.axis_names == ("data", "fsdp", "tensor") and dict(mesh.shape)["fsdp"] == 2
    assert all(t == AxisType.Auto for t in mesh.axis_types)
    assert dict(sharding.make_mesh().shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    with pytest.raises(ValueError, match="exactly the 8"):
        sharding.make_mesh((2, 2, 3))
    with pytest.raises(ValueError, match="one size per axis"):
        sharding.make_mesh((8, 1))


def test_logical_rules_and_divisibility_fallback():
    mesh = sharding.make_mesh((2, 2, 2))
    spec = sharding.logical_to_spec
    assert spec(("embed", "heads", "head_dim"), (64, 4, 16), mesh) == P("fsdp", "tensor", None)
    assert spec(("batch", "length"), (8, 5), mesh) == P(("data", "fsdp"), None)
    # batch of 2 cannot take data*fsdp=4: the longest dividing prefix (data) is kept.
    assert spec(("batch", "length"), (2, 5), mesh) == P("data", None)
    # 3 kv heads on a 2-way tensor axis: replicated, not an error.
    assert spec(("embed", "kv_heads", "head_dim"), (64, 3, 16), mesh) == P("fsdp", None, None)
    # An axis already used by batch is not reused by embed (activations).
    assert spec(("batch", "length", "embed"), (8, 4, 64), mesh) == P(("data", "fsdp"), None, None)
    assert spec(("vocab", "embed")) == P("tensor", "fsdp")  # no shape: no divisibility check
    with pytest.raises(ValueError, match="logical axis 'experts' has no rule"):
        spec(("experts",))
    with pytest.raises(ValueError, match="do not match shape"):
        spec(("embed",), (2, 3), mesh)


def _loss(model, ids):
    logits = model(ids)
    logp = jax.nn.log_softmax(logits[:, :-1])
    return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1)), logits


# One compiled program per mesh: forward logits (as aux), loss and gradient.
_loss_logits_grads = jax.jit(nnx.value_and_grad(_loss, has_aux=True))


@pytest.fixture(scope="module")
def reference():
    cfg = get_config("tiny-qwen3", num_heads=8, num_kv_heads=4)
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    ids = jnp.asarray(np.random.RandomState(0).randint(3, 256, (8, 16)), jnp.int32)
    (loss, logits), grads = _loss_logits_grads(model, ids)
    return cfg, ids, logits, loss, grads


@pytest.mark.parametrize("mesh_shape", MESHES)
def test_forward_and_gradient_match_single_device(mesh_shape, reference):
    cfg, ids, ref_logits, ref_loss, ref_grads = reference
    mesh = sharding.make_mesh(mesh_shape)
    model = sharding.shard_model(Transformer(cfg, rngs=nnx.Rngs(0)), mesh)
    _, fsdp, tensor = mesh_shape
    q = model.layers.attn.q[...]
    assert q.sharding.spec == P(None, "fsdp", "tensor", None)
    # Params really are split: one device holds 1 / (fsdp * tensor) of q.
    assert q.addressable_shards[0].data.size == q.size // (fsdp * tensor)
    ids_sharded = jax.device_put(ids, sharding.batch_sharding(mesh, shape=ids.shape))
    with jax.set_mesh(mesh):
        (loss, logits), grads = _loss_logits_grads(model, ids_sharded)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref_logits), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-5)
    flat_ref = dict(nnx.to_flat_state(ref_grads))
    for path, g in nnx.to_flat_state(grads):
        r = np.asarray(flat_ref[path][...])
        np.testing.assert_allclose(
            np.asarray(g[...]), r, rtol=1e-5, atol=1e-5 * np.abs(r).max(), err_msg=str(path)
        )


def test_state_shardings_cover_every_param():
    mesh = sharding.make_mesh((1, 2, 4))
    abstract = nnx.eval_shape(lambda: Transformer(get_config("tiny-llama"), rngs=nnx.Rngs(0)))
    specs = {
        p: v.get_value().spec
        for p, v in nnx.to_flat_state(sharding.state_shardings(abstract, mesh))
    }
    assert specs[("lm_head",)] == P("fsdp", "tensor")
    assert specs[("layers", "mlp", "down")] == P(None, "tensor", "fsdp")  # layers replicated
    assert specs[("layers", "attn", "k")] == P(None, "fsdp", None, None)  # 2 kv heads on 4


def test_to_global_batch_shards_rows_on_the_batch_axes():
    mesh = sharding.make_mesh((2, 2, 2))
    local = {"tokens": np.arange(32, dtype=np.int32).reshape(8, 4)}
    global_batch = sharding.to_global_batch(local, mesh)
    assert global_batch["tokens"].sharding.spec == P(("data", "fsdp"), None)
    np.testing.assert_array_equal(np.asarray(global_batch["tokens"]), local["tokens"])
    assert sharding.initialize_distributed() is False  # no launcher environment in tests
