"""Decoder-only transformers (Llama 3.x, Qwen2/2.5, Qwen3) in Flax NNX with HF import/export."""

from eigen_jax.models.config import ModelConfig
from eigen_jax.models.hf_io import from_pretrained, save_pretrained, tensor_mappings
from eigen_jax.models.presets import PRESETS, get_config
from eigen_jax.models.transformer import Cache, Transformer

__all__ = [
    "PRESETS",
    "Cache",
    "ModelConfig",
    "Transformer",
    "from_pretrained",
    "get_config",
    "save_pretrained",
    "tensor_mappings",
]
