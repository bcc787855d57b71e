"""Named `ModelConfig`s: real released sizes, tiny test sizes and benchmark sizes.

Real sizes mirror the released `config.json` files so that, e.g., a Qwen3-8B run can be planned
(memory, mesh) before the weights are downloaded; `from_pretrained` always trusts the checkpoint's
own config. Tiny sizes keep CPU tests fast; bench sizes (~25M, ~100M parameters) are for
`bench/model_bench.py`.
"""

from __future__ import annotations

from eigen_jax.models.config import ModelConfig

_LLAMA31_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def _qwen3(d, layers, heads, ffn, tied):
    return dict(
        family="qwen3",
        vocab_size=151936,
        hidden_size=d,
        intermediate_size=ffn,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=8,
        head_dim=128,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        max_position_embeddings=40960,
        tie_word_embeddings=tied,
        qk_norm=True,
        bos_token_id=151643,
        eos_token_id=151645,
    )


def _qwen3_moe(d, layers, heads, ffn, moe_ffn):
    # As the released config.json files: 128 experts, 8 per token, renormalised top-k weights,
    # every layer sparse, 4 KV heads.
    return dict(
        _qwen3(d, layers, heads, ffn, tied=False),
        family="qwen3_moe",
        num_kv_heads=4,
        num_experts=128,
        num_experts_per_tok=8,
        moe_intermediate_size=moe_ffn,
        norm_topk_prob=True,
    )


def _qwen25(d, layers, heads, kv, ffn, tied, vocab=152064):
    return dict(
        family="qwen2",
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=ffn,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        max_position_embeddings=32768,
        tie_word_embeddings=tied,
        attention_bias=True,
        bos_token_id=151643,
        eos_token_id=151645,
    )


def _llama31(d, layers, heads, ffn):
    return dict(
        family="llama",
        vocab_size=128256,
        hidden_size=d,
        intermediate_size=ffn,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=8,
        head_dim=128,
        rms_norm_eps=1e-5,
        rope_theta=500_000.0,
        rope_scaling=_LLAMA31_ROPE,
        max_position_embeddings=131072,
        bos_token_id=128000,
        eos_token_id=[128001, 128008, 128009],
    )


def _tiny(family, **kw):
    base = dict(
        family=family,
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        rms_norm_eps=1e-6,
        rope_theta=10_000.0,
        max_position_embeddings=512,
        attention_bias=family == "qwen2",
        qk_norm=family in ("qwen3", "qwen3_moe"),
    )
    base.update(kw)
    return base


PRESETS: dict[str, dict] = {
    # Qwen3 (dense)
    "qwen3-0.6b": _qwen3(1024, 28, 16, 3072, tied=True),
    "qwen3-1.7b": _qwen3(2048, 28, 16, 6144, tied=True),
    "qwen3-4b": _qwen3(2560, 36, 32, 9728, tied=True),
    "qwen3-8b": _qwen3(4096, 36, 32, 12288, tied=False),
    "qwen3-14b": _qwen3(5120, 40, 40, 17408, tied=False),
    "qwen3-32b": _qwen3(5120, 64, 64, 25600, tied=False),
    # Qwen3-MoE (the paper's models)
    "qwen3-30b-a3b": _qwen3_moe(2048, 48, 32, 6144, 768),
    "qwen3-235b-a22b": _qwen3_moe(4096, 94, 64, 12288, 1536),
    # Qwen2.5
    "qwen2.5-0.5b": _qwen25(896, 24, 14, 2, 4864, tied=True, vocab=151936),
    "qwen2.5-1.5b": _qwen25(1536, 28, 12, 2, 8960, tied=True, vocab=151936),
    "qwen2.5-3b": _qwen25(2048, 36, 16, 2, 11008, tied=True, vocab=151936),
    "qwen2.5-7b": _qwen25(3584, 28, 28, 4, 18944, tied=False),
    "qwen2.5-14b": _qwen25(5120, 48, 40, 8, 13824, tied=False),
    "qwen2.5-32b": _qwen25(5120, 64, 40, 8, 27648, tied=False),
    "qwen2.5-72b": _qwen25(8192, 80, 64, 8, 29568, tied=False),
    # Llama 3.1
    "llama3.1-8b": _llama31(4096, 32, 32, 14336),
    "llama3.1-70b": _llama31(8192, 80, 64, 28672),
    # tiny test sizes (hidden 64)
    "tiny-llama": _tiny(
        "llama", rope_scaling={**_LLAMA31_ROPE, "original_max_position_embeddings": 128}
    ),
    "tiny-qwen2": _tiny("qwen2", tie_word_embeddings=True),
    "tiny-qwen3": _tiny("qwen3"),
    "tiny-qwen3-moe": _tiny(
        "qwen3_moe",
        num_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        norm_topk_prob=True,
    ),
    # bench sizes: ~25M and ~100M parameters (Qwen3 layout, 32k vocab)
    "bench-25m": _tiny(
        "qwen3",
        vocab_size=32000,
        hidden_size=384,
        intermediate_size=1024,
        num_layers=8,
        num_heads=6,
        num_kv_heads=2,
        head_dim=64,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
    ),
    "bench-100m": _tiny(
        "qwen3",
        vocab_size=32000,
        hidden_size=768,
        intermediate_size=2048,
        num_layers=12,
        num_heads=12,
        num_kv_heads=4,
        head_dim=64,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
    ),
}


def get_config(name: str, **overrides) -> ModelConfig:
    """The preset `name` as a `ModelConfig`, with field `overrides` (e.g. dtype="bfloat16")."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
