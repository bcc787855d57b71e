"""Decoder-only transformer (Llama 3.x / Qwen2 / Qwen3) in Flax NNX.

Public contract (the sampler and trainer build on exactly this):

    model = Transformer(config, rngs=nnx.Rngs(0))
    model(input_ids, positions=None, segment_ids=None, cache=None, return_hidden=False)
      cache None   -> logits [B, T, V] float32
      cache given  -> (logits, new_cache)
      return_hidden -> final-normed hidden states [B, T, D] in place of logits
    model.project(hidden) -> float32 logits (lets callers compute log-probs in vocab chunks)
    model.init_cache(batch, max_len, dtype=None) -> [{"k", "v"}] per layer, [B, KV, S, hd]

With a cache, token (b, t) is written to slot positions[b, t] and attends slots <= that position
(segment_ids are not used). Give padding tokens positions that do not collide with real ones:
keep counting past the row's length (those slots are overwritten before they are ever attended)
or use positions >= max_len (such writes are dropped).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from eigen_jax.models.attention import Attention, LayerCache, init_layer_cache
from eigen_jax.models.config import ModelConfig
from eigen_jax.models.layers import MLP, RMSNorm, default_kernel_init, make_param
from eigen_jax.sharding import with_logical_constraint

Cache = list[LayerCache]
_ACT = ("batch", "length", "embed")
_REMAT_POLICY = {
    "full": None,  # save nothing inside the block
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class DecoderBlock(nnx.Module):
    """Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        norm = dict(eps=config.rms_norm_eps, dtype=config.compute_dtype,
                    param_dtype=config.weight_dtype, rngs=rngs)
        self.attn_norm = RMSNorm(config.hidden_size, **norm)
        self.attn = Attention(config, rngs=rngs)
        self.mlp_norm = RMSNorm(config.hidden_size, **norm)
        self.mlp = MLP(config, rngs=rngs)

    def __call__(self, x, positions, segment_ids, cache=None):
        attn_out, new_cache = self.attn(self.attn_norm(x), positions, segment_ids, cache)
        x = with_logical_constraint(x + attn_out, _ACT)
        x = with_logical_constraint(x + self.mlp(self.mlp_norm(x)), _ACT)
        return x, new_cache


def _block_forward(block: DecoderBlock, x, positions, segment_ids):
    return block(x, positions, segment_ids, None)[0]


def _block_cached(block: DecoderBlock, x, positions, segment_ids, cache):
    return block(x, positions, segment_ids, cache)


class Transformer(nnx.Module):
    """Token embedding, `num_layers` decoder blocks, final RMSNorm, (tied or untied) LM head."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        d, v, pdt = config.hidden_size, config.vocab_size, config.weight_dtype
        self.embed = make_param(rngs, default_kernel_init, (v, d), pdt, ("vocab", "embed"))
        self.layers = nnx.List([DecoderBlock(config, rngs=rngs) for _ in range(config.num_layers)])
        self.final_norm = RMSNorm(d, config.rms_norm_eps, dtype=config.compute_dtype,
                                  param_dtype=pdt, rngs=rngs)
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = make_param(rngs, default_kernel_init, (d, v), pdt, ("embed", "vocab"))

    # ------------------------------------------------------------------ forward
    def __call__(self, input_ids: jax.Array, positions: jax.Array | None = None,
                 segment_ids: jax.Array | None = None, cache: Cache | None = None,
                 return_hidden: bool = False):
        positions = self._check_inputs(input_ids, positions, segment_ids, cache)
        dt = self.config.compute_dtype
        x = jnp.take(self.embed[...], input_ids, axis=0).astype(dt)
        x = with_logical_constraint(x, _ACT)

        # Blocks are rematerialised per the config when differentiated: in training, and in
        # learners that run the cache path (shared prefixes). Undifferentiated (the sampler),
        # remat lowers to the plain block.
        block_fn = _block_forward if cache is None else _block_cached
        if self.config.remat != "none":
            block_fn = nnx.remat(block_fn, policy=_REMAT_POLICY[self.config.remat])
        new_cache: Cache | None = None
        if cache is None:
            for block in self.layers:
                x = block_fn(block, x, positions, segment_ids)
        else:
            new_cache = []
            for block, layer_cache in zip(self.layers, cache):
                x, updated = block_fn(block, x, positions, segment_ids, layer_cache)
                new_cache.append(updated)

        hidden = self.final_norm(x)
        out = hidden if return_hidden else self.project(hidden)
        return out if cache is None else (out, new_cache)

    def project(self, hidden: jax.Array) -> jax.Array:
        """Final-normed hidden states [..., D] -> float32 logits [..., V]."""
        dt = self.config.compute_dtype
        if self.lm_head is None:
            logits = jnp.einsum("...d,vd->...v", hidden.astype(dt), self.embed[...].astype(dt),
                                preferred_element_type=jnp.float32)
        else:
            logits = jnp.einsum("...d,dv->...v", hidden.astype(dt), self.lm_head[...].astype(dt),
                                preferred_element_type=jnp.float32)
        if logits.ndim == 3:
            logits = with_logical_constraint(logits, ("batch", "length", "vocab"))
        return logits.astype(jnp.float32)

    def init_cache(self, batch: int, max_len: int, dtype: Any = None) -> Cache:
        """Zeroed KV cache: one {"k", "v"} dict of [batch, num_kv_heads, max_len, head_dim] per
        layer. A plain pytree, so it can be jitted, donated and sharded like any array."""
        cfg = self.config
        dtype = cfg.compute_dtype if dtype is None else dtype
        return [init_layer_cache(batch, max_len, cfg.num_kv_heads, cfg.head_dim, dtype)
                for _ in range(cfg.num_layers)]

    # ------------------------------------------------------------------ validation
    def _check_inputs(self, input_ids, positions, segment_ids, cache) -> jax.Array:
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {input_ids.shape}")
        if not jnp.issubdtype(input_ids.dtype, jnp.integer):
            raise TypeError(f"input_ids must be integers, got {input_ids.dtype}")
        for name, arr in (("positions", positions), ("segment_ids", segment_ids)):
            if arr is not None and tuple(arr.shape) != tuple(input_ids.shape):
                raise ValueError(f"{name} shape {tuple(arr.shape)} != input_ids shape "
                                 f"{tuple(input_ids.shape)}")
        if cache is not None and len(cache) != self.config.num_layers:
            raise ValueError(f"cache has {len(cache)} layers, model has {self.config.num_layers}")
        if positions is None:
            b, t = input_ids.shape
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
        return positions
