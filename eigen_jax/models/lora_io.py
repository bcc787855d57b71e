"""LoRA adapters on a loaded model: add fresh ones, merge them into the base, and read/write them
in the PEFT layout (`adapter_config.json` + `adapter_model.safetensors`) that transformers +
PEFT and SGLang (`--lora-paths`) load.

PEFT names a dense adapter after the module it wraps, `base_model.model.model.layers.{i}.
self_attn.q_proj.lora_A.weight` [r, in] and `...lora_B.weight` [out, r], with in/out flattened
as HF's nn.Linear sees them; ours are A [layers, *in, r] and B [layers, r, *out] in our weight
layout (`hf_io`), flattened in the same order. MoE expert/router adapters have no nn.Linear to
wrap in transformers' fused expert layout: they are exported merged only.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from eigen_jax.models.config import ModelConfig
from eigen_jax.models.lora import LoRA, LoraConfig, delta_weight
from eigen_jax.models.transformer import Transformer
from eigen_jax.sharding import state_shardings

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model.model.layers"
# our adapter's (module, attribute) -> PEFT's module name under the decoder layer
_PEFT_MODULES = {
    ("attn", "q_lora"): "self_attn.q_proj",
    ("attn", "k_lora"): "self_attn.k_proj",
    ("attn", "v_lora"): "self_attn.v_proj",
    ("attn", "o_lora"): "self_attn.o_proj",
    ("mlp", "gate_lora"): "mlp.gate_proj",
    ("mlp", "up_lora"): "mlp.up_proj",
    ("mlp", "down_lora"): "mlp.down_proj",
}


def has_adapters(model: nnx.Module) -> bool:
    return bool(jax.tree.leaves(nnx.state(model, LoRA)))


def _placement(mesh, abstract_state):
    """The adapters' shardings on `mesh`; without one, left to jit (uncommitted, like a model
    built eagerly: a mix of committed and uncommitted state would compile a step twice)."""
    return None if mesh is None else state_shardings(abstract_state, mesh)


def add_lora(model: Transformer, lora: LoraConfig, mesh=None) -> Transformer:
    """`model` with fresh adapters (A drawn with `lora.seed`, B zero: the same function as the
    base), sharing the base's arrays (no copy). The adapters are built by the model's own
    constructor under jit, which drops the base's initialisers as dead code (no base-size
    allocation, whatever the model size)."""
    if has_adapters(model):
        raise ValueError("add_lora: the model already has LoRA adapters")
    config = model.config.replace(lora=lora)
    build = lambda: Transformer(config, rngs=nnx.Rngs(lora.seed))  # noqa: E731
    graphdef, abstract_lora, _ = nnx.split(nnx.eval_shape(build), LoRA, ...)
    adapters = jax.jit(
        lambda: nnx.state(build(), LoRA), out_shardings=_placement(mesh, abstract_lora)
    )()
    return nnx.merge(graphdef, adapters, nnx.state(model))


def merge_adapters(model: Transformer) -> Transformer:
    """A plain model (no adapters) whose weights are base + (alpha / r) A B: the merged
    checkpoint. Each merged weight keeps its base's dtype and sharding."""
    config = model.config
    if config.lora is None:
        return model
    base = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    adapters = dict(nnx.to_flat_state(nnx.state(model, LoRA)))
    scale = config.lora.scale
    for path, var in adapters.items():
        if path[-1] != "a":
            continue
        weight_path = path[:-2] + (path[-2].removesuffix("_lora"),)
        w = base[weight_path]
        a, b = var.get_value(), adapters[path[:-1] + ("b",)].get_value()
        merged = jax.jit(
            lambda w, a, b: w + delta_weight(a, b, w.ndim, scale).astype(w.dtype),
            out_shardings=w.get_value().sharding,
        )(w.get_value(), a, b)
        base[weight_path] = w.replace(merged)
    plain = nnx.eval_shape(lambda: Transformer(config.replace(lora=None), rngs=nnx.Rngs(0)))
    graphdef = nnx.graphdef(plain)
    return nnx.merge(graphdef, nnx.from_flat_state(base))


def peft_exportable(config: ModelConfig) -> bool:
    """Whether the adapters have a PEFT layout (not MoE experts/router)."""
    return config.lora is not None and not set(config.lora.targets) & {"experts", "router"}


def _peft_entries(config: ModelConfig):
    """(our A path, PEFT module name, layer) for every exported adapter; refuses MoE ones."""
    lora = config.lora
    if lora is None:
        raise ValueError("the model has no LoRA adapters to export")
    moe = [t for t in lora.targets if t in ("experts", "router")]
    if moe:
        raise ValueError(
            f"LoRA targets {moe} have no PEFT layout (transformers' fused MoE "
            "experts); export the merged checkpoint instead"
        )
    targeted = {m for (_, attr), m in _PEFT_MODULES.items() if m.split(".")[1] in lora.targets}
    for i in range(config.num_layers):
        for (module, attr), name in _PEFT_MODULES.items():
            if name not in targeted or (module == "mlp" and config.sparse_layers[i]):
                continue
            yield ("layers", module, attr), f"{_PEFT_PREFIX}.{i}.{name}", i


def _gather(x: jax.Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x), np.float32)


def peft_config(config: ModelConfig, base_model: str | None = None) -> dict[str, Any]:
    lora = config.lora
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": int(lora.rank),
        "lora_alpha": float(lora.alpha),
        "lora_dropout": float(lora.dropout),
        "target_modules": sorted(lora.targets),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
        "base_model_name_or_path": base_model,
        "layers_to_transform": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


def save_adapter(model: Transformer, out_dir: str, base_model: str | None = None) -> list[str]:
    """Write the adapters in the PEFT layout (every process gathers; process 0 writes)."""
    config = model.config
    variables = dict(nnx.to_flat_state(nnx.state(model, LoRA)))
    tensors = {}
    for path, name, i in _peft_entries(config):
        a = _gather(variables[path + ("a",)].get_value()[i])
        b = _gather(variables[path + ("b",)].get_value()[i])
        r = a.shape[-1]
        tensors[f"{name}.lora_A.weight"] = np.ascontiguousarray(a.reshape(-1, r).T)
        tensors[f"{name}.lora_B.weight"] = np.ascontiguousarray(b.reshape(r, -1).T)
    if jax.process_index() != 0:
        return []
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, ADAPTER_WEIGHTS), metadata={"format": "pt"})
    with open(os.path.join(out_dir, ADAPTER_CONFIG), "w") as f:
        json.dump(peft_config(config, base_model), f, indent=2)
    return [ADAPTER_CONFIG, ADAPTER_WEIGHTS]


def read_lora_config(adapter_dir: str) -> LoraConfig:
    """The `LoraConfig` of a PEFT LoRA adapter directory (plain LoRA only)."""
    path = os.path.join(adapter_dir, ADAPTER_CONFIG)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {ADAPTER_CONFIG} in {adapter_dir!r}")
    with open(path) as f:
        cfg = json.load(f)
    for key, ok in (
        ("peft_type", "LORA"),
        ("use_dora", False),
        ("use_rslora", False),
        ("bias", "none"),
        ("fan_in_fan_out", False),
    ):
        if cfg.get(key, ok) != ok:
            raise ValueError(f"{path}: {key}={cfg[key]!r} is unsupported (expected {ok!r})")
    for key in ("rank_pattern", "alpha_pattern", "layers_to_transform", "modules_to_save"):
        if cfg.get(key):
            raise ValueError(f"{path}: {key}={cfg[key]!r} is unsupported")
    targets = cfg["target_modules"]
    targets = [targets] if isinstance(targets, str) else list(targets)
    return LoraConfig(
        rank=int(cfg["r"]),
        alpha=float(cfg["lora_alpha"]),
        dropout=float(cfg.get("lora_dropout", 0.0)),
        targets=tuple(targets),
    )


def load_adapter(
    model: Transformer, adapter_dir: str, mesh=None, lora: LoraConfig | None = None
) -> Transformer:
    """`model` (no adapters) with the PEFT adapter of `adapter_dir`, to continue training it;
    `lora` may change what the file does not fix (dtype, dropout, seed)."""
    file_cfg = read_lora_config(adapter_dir)
    lora = (
        file_cfg
        if lora is None
        else LoraConfig(
            rank=file_cfg.rank,
            alpha=file_cfg.alpha,
            dropout=lora.dropout,
            targets=file_cfg.targets,
            dtype=lora.dtype,
            seed=lora.seed,
        )
    )
    model = add_lora(model, lora, mesh)
    variables = dict(nnx.to_flat_state(nnx.state(model, LoRA)))
    host = {k: np.array(_gather(v.get_value()), np.float32) for k, v in variables.items()}
    with safe_open(os.path.join(adapter_dir, ADAPTER_WEIGHTS), framework="numpy") as f:
        names = set(f.keys())
        wanted = set()
        for path, name, i in _peft_entries(model.config):
            for factor, key in (("a", "lora_A"), ("b", "lora_B")):
                tensor_name = f"{name}.{key}.weight"
                if tensor_name not in names:
                    raise ValueError(f"{adapter_dir}: adapter tensor {tensor_name!r} missing")
                wanted.add(tensor_name)
                t = f.get_tensor(tensor_name).T
                plane = host[path + (factor,)][i]
                plane[...] = t.reshape(plane.shape)
    extra = sorted(names - wanted)
    if extra:
        raise ValueError(f"{adapter_dir}: tensors this model has no adapter for: {extra[:4]}")
    for path, var in variables.items():
        value = var.get_value()
        x = host[path].astype(value.dtype)
        var.set_value(jnp.asarray(x) if mesh is None else jax.device_put(x, value.sharding))
    nnx.update(model, nnx.from_flat_state(variables))
    return model
