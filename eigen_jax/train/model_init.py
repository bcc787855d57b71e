"""Where a training stage's model comes from: a local HF checkpoint or a fresh random init."""

from __future__ import annotations

from typing import Any

import gin
from flax import nnx

from eigen_jax import models
from eigen_jax import sharding as shd
from eigen_jax.models import lora_io
from eigen_jax.models.lora import LoraConfig as _LoraConfig

# `run_sft.lora = @LoraConfig()` / `run_grpo.lora = @LoraConfig()`; `LoraConfig.rank = 16`, ...
LoraConfig = gin.external_configurable(_LoraConfig, "LoraConfig")


@gin.configurable
def init_model(
    mesh,
    hf_dir: str | None = None,
    preset: str | None = None,
    config_overrides: dict[str, Any] | None = None,
    vocab_size: int | None = None,
    seed: int = 0,
    dtype: str | None = None,
    param_dtype: str | None = None,
    remat: str | None = None,
):
    """(model, config): `hf_dir` wins (loaded straight into its sharding); else `preset` with
    `config_overrides` (and the tokenizer's `vocab_size`), randomly initialised and sharded."""
    overrides = dict(config_overrides or {})
    if remat is not None:
        overrides["remat"] = remat
    if hf_dir:
        return models.from_pretrained(
            hf_dir, mesh=mesh, dtype=dtype, param_dtype=param_dtype, **overrides
        )
    if not preset:
        raise ValueError("init_model needs hf_dir (a checkpoint) or preset (a random init)")
    if vocab_size is not None:
        overrides["vocab_size"] = vocab_size
    if dtype is not None:
        overrides["dtype"] = dtype
    if param_dtype is not None:
        overrides["param_dtype"] = param_dtype
    config = models.get_config(preset, **overrides)
    model = models.Transformer(config, rngs=nnx.Rngs(seed))
    return shd.shard_model(model, mesh), config


def with_adapters(model, mesh, lora=None, adapter_dir: str | None = None):
    """`model` with LoRA adapters: a PEFT adapter directory's (to continue training it; `lora`
    may set its dtype, dropout and seed) or fresh ones from `lora`; unchanged when neither."""
    if adapter_dir:
        return lora_io.load_adapter(model, adapter_dir, mesh, lora)
    if lora is not None:
        return lora_io.add_lora(model, lora, mesh)
    return model
