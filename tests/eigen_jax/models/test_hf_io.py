"""HF checkpoint import/export: round trip through transformers, sharded files, dtypes, mesh
placement and the errors a bad checkpoint must produce."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import PartitionSpec as P
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM

from eigen_jax.models import from_pretrained, save_pretrained
from eigen_jax.sharding import make_mesh
from tests.fixtures.tiny_hf import make_tiny_hf_checkpoint

IDS = np.random.RandomState(0).randint(3, 256, (2, 24)).astype(np.int32)


def _hf_logits(model_dir):
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(torch.tensor(IDS, dtype=torch.long)).logits.numpy()


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "qwen3_moe"])
def test_round_trip_through_transformers(family, tiny_checkpoints, tiny_references, tmp_path):
    model, config = from_pretrained(tiny_checkpoints[family])
    names = save_pretrained(model, config, str(tmp_path))
    assert names == ["model.safetensors"]
    with torch.no_grad():
        original = tiny_references[family](torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    reloaded = _hf_logits(str(tmp_path))
    np.testing.assert_allclose(reloaded, original, atol=1e-6, rtol=0)
    # Tensor names and shapes are exactly the ones transformers wrote.
    ours = load_file(str(tmp_path / "model.safetensors"))
    theirs = load_file(os.path.join(tiny_checkpoints[family], "model.safetensors"))
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    saved_cfg = json.loads((tmp_path / "config.json").read_text())
    assert saved_cfg["model_type"] == family and saved_cfg["torch_dtype"] == "float32"


def test_sharded_save_and_load(tiny_checkpoints, tmp_path):
    model, config = from_pretrained(tiny_checkpoints["qwen3"])
    names = save_pretrained(model, config, str(tmp_path / "out"), max_shard_bytes=60_000)
    assert len(names) > 2 and all(n.endswith(f"of-{len(names):05d}.safetensors") for n in names)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(names)
    reloaded, _ = from_pretrained(str(tmp_path / "out"))
    np.testing.assert_array_equal(
        np.asarray(reloaded(jnp.asarray(IDS))), np.asarray(model(jnp.asarray(IDS)))
    )
    np.testing.assert_allclose(_hf_logits(str(tmp_path / "out")), np.asarray(model(IDS)), atol=1e-4)


def test_loads_transformers_sharded_bf16_checkpoint(tmp_path):
    path = make_tiny_hf_checkpoint(
        str(tmp_path / "ckpt"), "llama", dtype="bfloat16", max_shard_size="100KB"
    )
    assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
    model, config = from_pretrained(path)
    assert config.param_dtype == "bfloat16" and config.dtype == "bfloat16"
    assert model.layers.mlp.up[...].dtype == jnp.bfloat16
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.tensor(IDS, dtype=torch.long)).logits.numpy()
    # bf16 weights, f32 compute: exact same weights as the upcast reference.
    model32, _ = from_pretrained(path, dtype="float32", param_dtype="float32")
    assert np.abs(np.asarray(model32(IDS)) - ref).max() <= 1e-4
    assert np.abs(np.asarray(model(IDS)) - ref).max() <= 0.25  # bf16 compute: loose sanity bound


def test_from_pretrained_places_each_tensor_in_its_sharding(tiny_checkpoints):
    mesh = make_mesh((1, 2, 4))
    model, _ = from_pretrained(tiny_checkpoints["qwen3"], mesh=mesh)
    attn = model.layers.attn
    assert attn.q[...].sharding.spec == P(None, "fsdp", "tensor", None)  # layers replicated
    assert attn.k[...].sharding.spec == P(None, "fsdp", None, None)  # 2 kv heads on 4: replicated
    assert model.lm_head[...].sharding.spec == P("fsdp", "tensor")
    assert model.embed[...].sharding.spec == P("tensor", "fsdp")
    shard_shapes = {s.data.shape for s in attn.q[...].addressable_shards}
    assert shard_shapes == {(attn.q[...].shape[0], 32, 1, 32)}  # each device holds only its slice


def _copy_with(src, dst, edit):
    shutil.copytree(src, dst)
    tensors = load_file(os.path.join(dst, "model.safetensors"))
    edit(tensors)
    save_file(tensors, os.path.join(dst, "model.safetensors"))
    return dst


def test_missing_tensor_is_named(tiny_checkpoints, tmp_path):
    bad = _copy_with(
        tiny_checkpoints["qwen3"],
        tmp_path / "bad",
        lambda t: t.pop("model.layers.1.self_attn.k_norm.weight"),
    )
    with pytest.raises(ValueError, match=r"missing tensor.*layers\.1\.self_attn\.k_norm"):
        from_pretrained(str(bad))


def test_shape_mismatch_is_named(tiny_checkpoints, tmp_path):
    def edit(t):
        t["model.layers.0.mlp.up_proj.weight"] = t["model.layers.0.mlp.up_proj.weight"][:-1]

    bad = _copy_with(tiny_checkpoints["llama"], tmp_path / "bad", edit)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.up_proj\.weight.*shape"):
        from_pretrained(str(bad))


def test_unexpected_tensor_and_architecture_are_rejected(tiny_checkpoints, tmp_path):
    bad = _copy_with(
        tiny_checkpoints["qwen3"],
        tmp_path / "extra",
        lambda t: t.update({"model.layers.0.mlp.extra": np.zeros(3, np.float32)}),
    )
    with pytest.raises(ValueError, match=r"does not use.*mlp\.extra"):
        from_pretrained(str(bad))
    other = tmp_path / "mixtral"
    shutil.copytree(tiny_checkpoints["qwen3"], other)
    cfg = json.loads((other / "config.json").read_text())
    cfg.update(model_type="mixtral", architectures=["MixtralForCausalLM"])
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="MixtralForCausalLM"):
        from_pretrained(str(other))
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(str(tmp_path))


def test_save_gathers_sharded_params(tiny_checkpoints, tmp_path):
    model, config = from_pretrained(tiny_checkpoints["qwen2"], mesh=make_mesh((2, 2, 2)))
    save_pretrained(model, config, str(tmp_path))
    saved = load_file(str(tmp_path / "model.safetensors"))
    original = load_file(os.path.join(tiny_checkpoints["qwen2"], "model.safetensors"))
    for name, value in original.items():
        np.testing.assert_array_equal(saved[name], value, err_msg=name)
