"""Hugging Face checkpoint import/export (config.json + safetensors, single file or sharded).

Loading builds the model abstractly (`nnx.eval_shape`, no memory) and fills it one tensor at a
time: each tensor is read on the host once, converted to our layout, and placed directly into its
sharding with `jax.make_array_from_callback` (every device receives only its own slice; no
full copy per device, no full model on the host). A decoder-stack parameter is stacked over the
layers on the devices, from its per-layer tensors placed the same way, so the host holds one
layer's tensor at a time. Saving gathers one tensor at a time and writes shards that
transformers and SGLang load unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding
from safetensors import safe_open
from safetensors.numpy import save_file

from eigen_jax import paths
from eigen_jax.models.config import ModelConfig
from eigen_jax.models.transformer import Transformer
from eigen_jax.sharding import LOGICAL_AXIS_RULES, logical_to_sharding, variable_logical_axes

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"
# Tensors some exporters add that carry no parameters of ours.
_IGNORABLE_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclasses.dataclass(frozen=True)
class TensorMapping:
    """One HF tensor: our state path (and, for the decoder stack, its index on the stacked
    `layers` axis and, for an MoE expert, on the `expert` axis after it), the HF tensor name and
    the two layout conversions."""

    path: tuple[str, ...]
    hf_name: str
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_hf: Callable[[np.ndarray], np.ndarray]
    layer: int | None = None
    expert: int | None = None

    def index(self) -> tuple[int, ...]:
        """Where this tensor sits in our (stacked) parameter."""
        return tuple(i for i in (self.layer, self.expert) if i is not None)


def _identity(x):
    return x


def _linear(out_shape: tuple[int, ...]):
    """HF nn.Linear weight [out, in] <-> ours [in, *out_shape]."""
    return (lambda w: w.T.reshape((w.shape[1],) + out_shape), lambda k: k.reshape(k.shape[0], -1).T)


def _linear_in(in_shape: tuple[int, ...]):
    """HF o_proj weight [out, heads*hd] <-> ours [heads, hd, out]."""
    return (lambda w: w.T.reshape(in_shape + (w.shape[0],)), lambda k: k.reshape(-1, k.shape[-1]).T)


def _reshape(shape: tuple[int, ...]):
    return (lambda b: b.reshape(shape), lambda b: b.reshape(-1))


def tensor_mappings(config: ModelConfig) -> list[TensorMapping]:
    """Every parameter of `Transformer(config)` with its HF name and layout conversion."""
    h, kv, hd = config.num_heads, config.num_kv_heads, config.head_dim
    maps = [
        TensorMapping(("embed",), "model.embed_tokens.weight", _identity, _identity),
        TensorMapping(("final_norm", "scale"), "model.norm.weight", _identity, _identity),
    ]
    if not config.tie_word_embeddings:
        maps.append(TensorMapping(("lm_head",), "lm_head.weight", np.transpose, np.transpose))
    for i in range(config.num_layers):
        pre = f"model.layers.{i}."
        per_layer = [
            (("attn_norm", "scale"), "input_layernorm.weight", (_identity, _identity)),
            (("mlp_norm", "scale"), "post_attention_layernorm.weight", (_identity, _identity)),
            (("attn", "q"), "self_attn.q_proj.weight", _linear((h, hd))),
            (("attn", "k"), "self_attn.k_proj.weight", _linear((kv, hd))),
            (("attn", "v"), "self_attn.v_proj.weight", _linear((kv, hd))),
            (("attn", "o"), "self_attn.o_proj.weight", _linear_in((h, hd))),
        ]
        if config.attention_bias:
            per_layer += [
                (("attn", "q_bias"), "self_attn.q_proj.bias", _reshape((h, hd))),
                (("attn", "k_bias"), "self_attn.k_proj.bias", _reshape((kv, hd))),
                (("attn", "v_bias"), "self_attn.v_proj.bias", _reshape((kv, hd))),
            ]
        if config.qk_norm:
            per_layer += [
                (("attn", "q_norm", "scale"), "self_attn.q_norm.weight", (_identity, _identity)),
                (("attn", "k_norm", "scale"), "self_attn.k_norm.weight", (_identity, _identity)),
            ]
        for path, name, (to_ours, to_hf) in per_layer:
            maps.append(TensorMapping(("layers",) + path, pre + name, to_ours, to_hf, i))
        maps += _mlp_mappings(config, i, pre)
    return maps


def _mlp_mappings(config: ModelConfig, i: int, pre: str) -> list[TensorMapping]:
    """Layer i's dense MLP, or its router and per-expert SwiGLU weights (HF keeps one tensor
    per expert; ours stacks them on the `expert` axis)."""
    t = (np.transpose, np.transpose)
    if not config.sparse_layers[i]:
        return [
            TensorMapping(("layers", "mlp", n), f"{pre}mlp.{n}_proj.weight", *t, i)
            for n in ("gate", "up", "down")
        ]
    maps = [TensorMapping(("layers", "moe", "router"), f"{pre}mlp.gate.weight", *t, i)]
    for j in range(config.num_experts):
        maps += [
            TensorMapping(("layers", "moe", n), f"{pre}mlp.experts.{j}.{n}_proj.weight", *t, i, j)
            for n in ("gate", "up", "down")
        ]
    return maps


def load_hf_config(model_dir: str) -> dict[str, Any]:
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no config.json in {model_dir!r}")
    with open(path) as f:
        return json.load(f)


def _weight_map(model_dir: str) -> dict[str, str]:
    """HF tensor name -> safetensors file (from the index, or by listing the files)."""
    index = os.path.join(model_dir, SAFETENSORS_INDEX)
    if os.path.isfile(index):
        with open(index) as f:
            return dict(json.load(f)["weight_map"])
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {model_dir!r}")
    mapping = {}
    for name in files:
        with safe_open(os.path.join(model_dir, name), framework="numpy") as f:
            mapping.update({k: name for k in f.keys()})
    return mapping


def from_pretrained(
    model_dir: str,
    mesh: Mesh | None = None,
    dtype: Any = None,
    param_dtype: Any = None,
    rules=LOGICAL_AXIS_RULES,
    **config_overrides,
) -> tuple[Transformer, ModelConfig]:
    """Load an HF checkpoint directory (local, or a URL read through a local copy) into a
    `Transformer`, sharded on `mesh`.

    `dtype`/`param_dtype` default to the checkpoint's dtype; extra keyword arguments override
    other `ModelConfig` fields (e.g. `remat="full"`). Without a mesh, parameters go to the first
    device. Raises ValueError naming the tensor on a missing, unexpected or mis-shaped tensor.
    """
    model_dir = paths.local_dir(model_dir, "model")
    overrides = dict(config_overrides)
    if dtype is not None:
        overrides["dtype"] = dtype
    if param_dtype is not None:
        overrides["param_dtype"] = param_dtype
    config = ModelConfig.from_hf_config(load_hf_config(model_dir), **overrides)
    abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    variables = dict(nnx.to_flat_state(abstract_state))

    weight_map = _weight_map(model_dir)
    mappings = tensor_mappings(config)
    wanted = {m.hf_name for m in mappings}
    unexpected = sorted(
        k
        for k in weight_map
        if k not in wanted
        and not k.endswith(_IGNORABLE_SUFFIXES)
        and not (config.tie_word_embeddings and k == "lm_head.weight")
    )
    if unexpected:
        raise ValueError(
            f"checkpoint {model_dir!r} has tensors this {config.family} config does "
            f"not use: {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
        )
    missing = sorted(m.hf_name for m in mappings if m.hf_name not in weight_map)
    if missing:
        raise ValueError(
            f"checkpoint {model_dir!r} is missing tensor(s) {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}"
        )

    by_path: dict[tuple[str, ...], list[TensorMapping]] = {}
    for m in mappings:
        by_path.setdefault(m.path, []).append(m)
    with contextlib.ExitStack() as stack:
        handles: dict[str, Any] = {}

        def read(m: TensorMapping) -> np.ndarray:
            fname = weight_map[m.hf_name]
            if fname not in handles:
                handles[fname] = stack.enter_context(
                    safe_open(os.path.join(model_dir, fname), framework="numpy")
                )
            return m.to_ours(handles[fname].get_tensor(m.hf_name))

        for path, group in by_path.items():
            variable = variables[path]
            axes, shape = variable_logical_axes(variable), tuple(variable.shape)
            sharding = _placer(mesh, axes, shape, rules)
            if group[0].layer is None:
                value = _place_host(read(group[0]), variable, sharding, group[0], shape)
            else:
                value = _stack_planes(group, read, variable, mesh, axes, shape, rules)
            variable.set_value(value)
    model = nnx.merge(graphdef, nnx.from_flat_state(variables))
    return model, config


def _stack_planes(
    group: list[TensorMapping], read, variable, mesh, axes, shape, rules
) -> jax.Array:
    """A stacked parameter from its per-layer (and per-expert) tensors, each placed in its
    slice's sharding as it is read; a layer the checkpoint has no tensor for (the unused MLP
    kind of a model mixing dense and sparse layers) is zero."""
    by_layer: dict[int, list[TensorMapping]] = {}
    for m in group:
        by_layer.setdefault(m.layer, []).append(m)
    dtype = variable.get_value().dtype

    def place(ms: list[TensorMapping], depth: int) -> jax.Array:
        plane_sharding = _placer(mesh, axes[depth:], shape[depth:], rules)
        if not ms:
            return jax.jit(lambda: jnp.zeros(shape[depth:], dtype), out_shardings=plane_sharding)()
        if depth == len(ms[0].index()):  # one tensor: this plane is it
            return _place_host(read(ms[0]), variable, plane_sharding, ms[0], shape[depth:])
        experts = [place([m], depth + 1) for m in sorted(ms, key=lambda m: m.expert)]
        return jax.jit(jnp.stack, out_shardings=plane_sharding)(experts)

    planes = [place(by_layer.get(i, []), 1) for i in range(shape[0])]
    return jax.jit(jnp.stack, out_shardings=_placer(mesh, axes, shape, rules))(planes)


def _placer(mesh: Mesh | None, axes, shape, rules):
    if mesh is None:
        return SingleDeviceSharding(jax.devices()[0])
    return logical_to_sharding(axes, mesh, tuple(shape), rules)


def _place_host(
    host: np.ndarray, variable, sharding, m: TensorMapping, shape: tuple[int, ...]
) -> jax.Array:
    """A converted host tensor checked against `shape` and placed in `sharding` (each device
    receives only its own slice)."""
    if tuple(host.shape) != shape:
        where = (m.path,) + tuple(
            f"{n} {i}" for n, i in (("layer", m.layer), ("expert", m.expert)) if i is not None
        )
        raise ValueError(
            f"tensor {m.hf_name!r} has shape {tuple(host.shape)} after "
            f"conversion, expected {shape} for {where}"
        )
    host = np.ascontiguousarray(host.astype(variable.get_value().dtype))
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def save_pretrained(
    model: Transformer, config: ModelConfig, out_dir: str, max_shard_bytes: int = 4 * 1024**3
) -> list[str]:
    """Write `config.json` + safetensors (sharded with an index past `max_shard_bytes`).

    Shards are planned from the parameter shapes, then each is gathered one tensor at a time,
    written, and freed, so the host never holds more than one shard. In multi-process runs every
    process must call this (the gathers are collective); only process 0 writes. Returns the
    written safetensors file names.
    """
    if config.lora is not None or getattr(model.config, "lora", None) is not None:
        raise ValueError(
            "save_pretrained: the model carries LoRA adapters; merge them first "
            "(models.lora_io.merge_adapters) or save them (lora_io.save_adapter)"
        )
    variables = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    plan: list[list[TensorMapping]] = [[]]
    shard_bytes = 0
    for m in tensor_mappings(config):
        if m.path not in variables:
            raise ValueError(
                f"model has no parameter {m.path} (HF {m.hf_name!r}); does the "
                "config match the model?"
            )
        value = variables[m.path].get_value()
        shape = value.shape[len(m.index()) :]
        nbytes = int(np.prod(shape)) * np.dtype(value.dtype).itemsize
        if shard_bytes and shard_bytes + nbytes > max_shard_bytes:
            plan.append([])
            shard_bytes = 0
        plan[-1].append(m)
        shard_bytes += nbytes
    if len(plan) == 1:
        names = [SAFETENSORS_SINGLE]
    else:
        names = [f"model-{i + 1:05d}-of-{len(plan):05d}.safetensors" for i in range(len(plan))]

    writer = jax.process_index() == 0
    if writer:
        os.makedirs(out_dir, exist_ok=True)
    total_size = 0
    for name, shard in zip(names, plan):
        tensors = {}
        for m in shard:
            value = variables[m.path].get_value()
            if m.index():
                value = value[m.index()]
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                value = multihost_utils.process_allgather(value, tiled=True)
            tensors[m.hf_name] = np.ascontiguousarray(m.to_hf(np.asarray(jax.device_get(value))))
            total_size += tensors[m.hf_name].nbytes
        if writer:
            save_file(tensors, os.path.join(out_dir, name), metadata={"format": "pt"})
        del tensors
    if not writer:
        return []

    index_path = os.path.join(out_dir, SAFETENSORS_INDEX)
    if len(plan) > 1:
        index = {
            "metadata": {"total_size": total_size},
            "weight_map": {m.hf_name: n for n, shard in zip(names, plan) for m in shard},
        }
        with open(index_path, "w") as f:
            json.dump(index, f, indent=2)
    elif os.path.exists(index_path):
        os.remove(index_path)  # a stale index would point transformers at missing files
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config.to_hf_config(), f, indent=2)
    return names
