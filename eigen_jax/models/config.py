"""`ModelConfig`: the one description of a decoder-only transformer, and its HF conversion.

Llama 3.x, Qwen2/2.5 and Qwen3 differ only in a few switches (q/k/v biases, q/k RMSNorm, rope
scaling, tied embeddings, explicit head_dim), so one dataclass covers all three; Qwen3-MoE is
Qwen3 with a sparse mixture-of-experts MLP in some or all layers (the `num_experts` fields).
The config owns its conversion to and from a Hugging Face `config.json` (Levanter style) so
that checkpoints round-trip through transformers and SGLang unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from eigen_jax.models.lora import LoraConfig

# family -> (HF model_type, HF architecture class name)
FAMILIES = {
    "llama": ("llama", "LlamaForCausalLM"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "qwen3": ("qwen3", "Qwen3ForCausalLM"),
    "qwen3_moe": ("qwen3_moe", "Qwen3MoeForCausalLM"),
}
QK_NORM_FAMILIES = ("qwen3", "qwen3_moe")
MOE_IMPLS = ("auto", "ragged", "tiled", "dense")
_ARCH_TO_FAMILY = {arch: fam for fam, (_, arch) in FAMILIES.items()}
_TYPE_TO_FAMILY = {mt: fam for fam, (mt, _) in FAMILIES.items()}

ATTENTION_IMPLS = ("auto", "xla", "splash", "cudnn")
DECODE_ATTENTION_IMPLS = ("auto", "xla", "pallas")
REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")
ROPE_TYPES = ("default", "linear", "llama3")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def canonical_dtype(dtype: Any) -> str:
    """Normalise `jnp.bfloat16`, `"bf16"`, `np.dtype("float32")`, ... to a name in `_DTYPES`."""
    aliases = {
        "bf16": "bfloat16",
        "f32": "float32",
        "fp32": "float32",
        "f16": "float16",
        "fp16": "float16",
        "half": "float16",
        "float": "float32",
    }
    name = aliases.get(str(dtype), None) or jnp.dtype(dtype).name
    if name not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
    return name


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture plus numerics of one model.

    `dtype` is the compute dtype (activations, matmul inputs); `param_dtype` is how parameters are
    stored. `remat` picks the activation-checkpoint policy applied per decoder block in training.
    `attention_block` is the query-block length of training attention (causal blocks skip the
    keys after them; 0 = one dense block), a speed knob that never changes the result.
    `attention_impl` picks training attention (no cache): "xla" (query blocks, tuned on CPUs),
    "splash" (the Pallas TPU kernel; interpret mode on a CPU), "cudnn" (cuDNN flash attention,
    GPU only; float32 compute is cast to bfloat16 for it), "auto" = splash when the program is
    compiled for a TPU, cudnn for a GPU when the compute dtype (bf16/fp16) and head_dim suit
    cuDNN, else xla. Same result either way, up to kernel tolerance.
    `decode_attention_impl` picks the cached attention of one-token decode steps: "xla" (masked
    attention over the first kv_len slots), "pallas" (`models.decode_attention`, a TPU kernel
    that reads only each row's live slots and writes the new ones itself; interpret mode on a
    CPU), "auto" = pallas when the program is compiled for a TPU and the shapes tile, else xla.
    `scan_layers` runs the stacked decoder blocks under `lax.scan` (one block in the program, so
    compile time does not grow with depth); off, they are unrolled over the same parameters.

    Mixture of experts (family "qwen3_moe", as HF's Qwen3-MoE): layer i is sparse unless it is
    in `mlp_only_layers` or `(i + 1) % decoder_sparse_step != 0`; a sparse layer routes each
    token to `num_experts_per_tok` of `num_experts` SwiGLU experts of `moe_intermediate_size`
    (dense layers keep `intermediate_size`). `moe_impl` picks the expert computation: "ragged"
    (tokens sorted by expert, grouped matmuls through `ragged_dot`), "tiled" (the same as one
    batched matmul over expert-aligned tiles), "dense" (every expert on every token, the
    reference the tests compare with) or "auto": ragged when compiled for a TPU or GPU (where
    `ragged_dot` is a grouped-matmul kernel), tiled on a CPU (whose `ragged_dot` is slower than
    even the dense reference: `bench/moe_bench.py`).

    `lora`: LoRA adapters on the weights it targets (`models.lora`); not part of the HF config.
    """

    family: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10_000.0
    rope_scaling: Mapping[str, Any] | None = None
    max_position_embeddings: int = 32_768
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    qk_norm: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: str = "none"
    attention_block: int = 128
    scan_layers: bool = True
    attention_impl: str = "auto"
    decode_attention_impl: str = "auto"
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = False
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    moe_impl: str = "auto"
    lora: LoraConfig | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; expected one of {sorted(FAMILIES)}")
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
        ):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads}) for grouped-query attention"
            )
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError(
                    f"hidden_size ({self.hidden_size}) is not divisible by num_heads "
                    f"({self.num_heads}); give head_dim explicitly"
                )
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if self.family == "qwen2" and not self.attention_bias:
            raise ValueError("family 'qwen2' always has q/k/v biases; attention_bias must be True")
        if self.qk_norm != (self.family in QK_NORM_FAMILIES):
            raise ValueError(
                f"qk_norm={self.qk_norm} does not match family {self.family!r} "
                f"(only {QK_NORM_FAMILIES} normalise q and k)"
            )
        self._check_moe()
        if self.lora is not None and not isinstance(self.lora, LoraConfig):
            object.__setattr__(self, "lora", LoraConfig(**dict(self.lora)))
        if self.attention_block < 0:
            raise ValueError(f"attention_block must be >= 0, got {self.attention_block}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(
                f"attention_impl={self.attention_impl!r}; expected one of {ATTENTION_IMPLS}"
            )
        if self.decode_attention_impl not in DECODE_ATTENTION_IMPLS:
            raise ValueError(
                f"decode_attention_impl={self.decode_attention_impl!r}; expected one of "
                f"{DECODE_ATTENTION_IMPLS}"
            )
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat={self.remat!r}; expected one of {REMAT_POLICIES}")
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        object.__setattr__(self, "param_dtype", canonical_dtype(self.param_dtype))
        if self.rope_scaling is not None:
            scaling = dict(self.rope_scaling)
            rope_type = scaling.get("rope_type", scaling.get("type", "default"))
            if rope_type not in ROPE_TYPES:
                raise ValueError(
                    f"unsupported rope_scaling type {rope_type!r}; expected one of {ROPE_TYPES}"
                )
            scaling["rope_type"] = rope_type
            scaling.pop("type", None)
            scaling.pop("rope_theta", None)
            # A "default" scaling is no scaling; keep one spelling so configs compare equal.
            object.__setattr__(self, "rope_scaling", None if rope_type == "default" else scaling)

    def _check_moe(self) -> None:
        object.__setattr__(self, "mlp_only_layers", tuple(int(i) for i in self.mlp_only_layers))
        if (self.family == "qwen3_moe") != (self.num_experts > 0):
            raise ValueError(
                f"num_experts={self.num_experts} does not match family "
                f"{self.family!r} (only qwen3_moe has experts)"
            )
        if self.family != "qwen3_moe":
            return
        if not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError(
                f"num_experts_per_tok must be in [1, num_experts={self.num_experts}]"
                f", got {self.num_experts_per_tok}"
            )
        if self.moe_intermediate_size <= 0 or self.decoder_sparse_step <= 0:
            raise ValueError(
                "moe_intermediate_size and decoder_sparse_step must be positive, got "
                f"{self.moe_intermediate_size} and {self.decoder_sparse_step}"
            )
        if self.moe_impl not in MOE_IMPLS:
            raise ValueError(f"moe_impl={self.moe_impl!r}; expected one of {MOE_IMPLS}")

    def __hash__(self) -> int:
        # NNX keeps the config as static module metadata, which must be hashable; the
        # rope_scaling dict and an eos id list are not, so hash a canonical JSON rendering.
        return hash(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))

    # ------------------------------------------------------------------ derived quantities
    @property
    def compute_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def weight_dtype(self):
        return _DTYPES[self.param_dtype]

    @property
    def sparse_layers(self) -> tuple[bool, ...]:
        """Per layer: True where the MLP is the mixture of experts (HF's Qwen3-MoE rule)."""
        return tuple(
            self.num_experts > 0
            and i not in self.mlp_only_layers
            and (i + 1) % self.decoder_sparse_step == 0
            for i in range(self.num_layers)
        )

    def num_params(self, active: bool = False) -> int:
        """Parameter count, computed from the shapes (embedding counted once when tied);
        `active`: only the experts one token runs through (the FLOP-relevant count)."""
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        q, kv = self.num_heads * hd, self.num_kv_heads * hd
        attn = d * q + 2 * d * kv + q * d
        if self.attention_bias:
            attn += q + 2 * kv
        if self.qk_norm:
            attn += 2 * hd
        experts = self.num_experts_per_tok if active else self.num_experts
        moe = d * self.num_experts + 3 * d * self.moe_intermediate_size * experts
        mlps = sum(moe if sparse else 3 * d * f for sparse in self.sparse_layers)
        head = 0 if self.tie_word_embeddings else d * self.vocab_size
        return self.num_layers * (attn + 2 * d) + mlps + self.vocab_size * d + head + d

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ HF conversion
    @classmethod
    def from_hf_config(cls, hf_config: Any, **overrides) -> ModelConfig:
        """Build from a transformers `PretrainedConfig` or a `config.json` dict.

        `overrides` set eigen-jax-only fields (`dtype`, `param_dtype`, `remat`,
        `attention_block`, `scan_layers`, `attention_impl`, `decode_attention_impl`, `moe_impl`).
        Raises ValueError naming the key when the architecture or a feature is unsupported.
        """
        cfg = hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)
        family = _TYPE_TO_FAMILY.get(cfg.get("model_type", ""))
        for arch in cfg.get("architectures") or ():
            family = family or _ARCH_TO_FAMILY.get(arch)
            if arch not in _ARCH_TO_FAMILY:
                raise ValueError(
                    f"unsupported architecture {arch!r} in 'architectures'; "
                    f"supported: {sorted(_ARCH_TO_FAMILY)}"
                )
        if family is None:
            raise ValueError(
                f"unsupported model_type {cfg.get('model_type')!r}; supported: "
                f"{sorted(_TYPE_TO_FAMILY)}"
            )
        missing = [
            k
            for k in (
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
            )
            if k not in cfg
        ]
        if missing:
            raise ValueError(f"HF config is missing required key(s) {missing}")
        if cfg.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act={cfg['hidden_act']!r} is unsupported; only 'silu'")
        if cfg.get("mlp_bias", False):
            raise ValueError("mlp_bias=True is unsupported (no supported family uses it)")
        if cfg.get("use_sliding_window", False):
            raise ValueError("use_sliding_window=True is unsupported; full attention only")

        rope = dict(cfg.get("rope_parameters") or {})
        rope_theta = rope.pop("rope_theta", cfg.get("rope_theta", 10_000.0))
        scaling = rope or cfg.get("rope_scaling") or None
        num_heads = cfg["num_attention_heads"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // num_heads
        fields = dict(
            family=family,
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=cfg.get("num_key_value_heads") or num_heads,
            head_dim=head_dim,
            rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta),
            rope_scaling=scaling,
            max_position_embeddings=cfg.get("max_position_embeddings", 32_768),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            # Qwen2 always has q/k/v biases; Llama and Qwen3 expose the switch.
            attention_bias=True if family == "qwen2" else bool(cfg.get("attention_bias", False)),
            qk_norm=family in QK_NORM_FAMILIES,
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_id=cfg.get("eos_token_id"),
        )
        if family == "qwen3_moe":
            # Released checkpoints say num_experts; transformers writes num_local_experts.
            fields.update(
                num_experts=cfg.get("num_experts") or cfg.get("num_local_experts") or 0,
                num_experts_per_tok=cfg.get("num_experts_per_tok", 0),
                moe_intermediate_size=cfg.get("moe_intermediate_size", 0),
                norm_topk_prob=bool(cfg.get("norm_topk_prob", False)),
                decoder_sparse_step=cfg.get("decoder_sparse_step", 1),
                mlp_only_layers=tuple(cfg.get("mlp_only_layers") or ()),
            )
        dtype = cfg.get("dtype") or cfg.get("torch_dtype")
        if dtype in ("float32", "bfloat16", "float16"):
            fields["param_dtype"] = dtype
            fields["dtype"] = dtype
        fields.update(overrides)
        return cls(**fields)

    def to_hf_config(self) -> dict[str, Any]:
        """A `config.json` dict that transformers (4.x and 5.x) and SGLang load unchanged."""
        model_type, arch = FAMILIES[self.family]
        rope_params = {"rope_theta": self.rope_theta, "rope_type": "default"}
        if self.rope_scaling:
            rope_params.update(self.rope_scaling)
        out: dict[str, Any] = {
            "architectures": [arch],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": dict(self.rope_scaling) if self.rope_scaling else None,
            "rope_parameters": rope_params,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": self.param_dtype,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "initializer_range": 0.02,
            "use_cache": True,
            "attention_dropout": 0.0,
        }
        if self.family == "llama":
            out.update(attention_bias=self.attention_bias, mlp_bias=False)
        elif self.family in QK_NORM_FAMILIES:
            out.update(
                attention_bias=self.attention_bias, use_sliding_window=False, sliding_window=None
            )
        if self.family == "qwen3_moe":
            out.update(
                num_experts=self.num_experts,
                num_experts_per_tok=self.num_experts_per_tok,
                moe_intermediate_size=self.moe_intermediate_size,
                norm_topk_prob=self.norm_topk_prob,
                decoder_sparse_step=self.decoder_sparse_step,
                mlp_only_layers=list(self.mlp_only_layers),
            )
        else:
            out.update(use_sliding_window=False, sliding_window=None)
        return out
