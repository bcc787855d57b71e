"""Grouped-query self-attention with optional q/k/v biases (Qwen2), q/k RMSNorm (Qwen3) and a
slot-addressed KV cache.

Two masking regimes (the contract the trainer and sampler rely on):
  * no cache: causal by index within a segment, `segment_ids == 0` is padding (never attended);
  * with cache: token (b, t) is written to slot `positions[b, t]` and attends every slot
    `s <= positions[b, t]` of its row. Right-padded batched prefill, per-row decode positions and
    appending a chunk at a row's current length all follow; stale slots are never attended.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from eigen_jax.models import cudnn_attention, decode_attention, splash
from eigen_jax.models import lora as lora_lib
from eigen_jax.models.config import ModelConfig
from eigen_jax.models.layers import RMSNorm, default_kernel_init, make_param
from eigen_jax.models.rope import apply_rope, inverse_frequencies
from eigen_jax.sharding import with_logical_constraint

# Heads-major cache: the decode attention's dots read [B, KV, S, hd] as they are stored (a
# [B, S, KV, hd] cache was transposed for them in every layer of every decode step). The layers
# are stacked on a leading axis, as the scanned decoder stack carries them: each layer scatters
# its new keys straight into its own plane, so a step never copies a layer's whole cache.
Cache = dict[str, jax.Array]  # {"k": [L, B, KV, S, hd], "v": [L, B, KV, S, hd]}
CACHE_LOGICAL_AXES = ("layers", "batch", "kv_heads", "length", "head_dim")
CACHE_ROW_AXIS = 1
CACHE_SLOT_AXIS = 3


def training_mask(segment_ids: jax.Array) -> jax.Array:
    """[B, 1, T, T] mask: j <= i, same segment, key not padding."""
    t = segment_ids.shape[1]
    causal = jnp.tril(jnp.ones((t, t), dtype=jnp.bool_))
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    valid = (segment_ids != 0)[:, None, :]
    return (causal[None] & same & valid)[:, None]


def cache_mask(positions: jax.Array, cache_len: int) -> jax.Array:
    """[B, 1, T, S] mask: slot s visible to token (b, t) iff s <= positions[b, t]."""
    slots = jnp.arange(cache_len, dtype=positions.dtype)
    return (slots[None, None, :] <= positions[:, :, None])[:, None]


def write_cache(
    cache: Cache,
    layer: jax.Array,
    rows: jax.Array,
    k: jax.Array,
    v: jax.Array,
    positions: jax.Array,
) -> Cache:
    """Scatter new keys/values [B, T, KV, hd] of `layer` into cache rows `rows` [B] at slots
    `positions` [B, T] (out-of-range rows or slots drop the write)."""
    rows = rows[:, None]
    # Advanced indices on axes 0 (scalar), 1 and 3 broadcast to [B, T] and lead the indexed
    # shape, so the update is [B, T, KV, hd]: the new keys as they are.
    new_k = cache["k"].at[layer, rows, :, positions].set(k.astype(cache["k"].dtype), mode="drop")
    new_v = cache["v"].at[layer, rows, :, positions].set(v.astype(cache["v"].dtype), mode="drop")
    return {
        "k": with_logical_constraint(new_k, CACHE_LOGICAL_AXES),
        "v": with_logical_constraint(new_v, CACHE_LOGICAL_AXES),
    }


def read_cache(
    x: jax.Array, layer: jax.Array, rows: jax.Array | None, kv_len: int | None
) -> jax.Array:
    """Layer `layer`'s [B, KV, kv_len, hd] keys (or values) of cache rows `rows` (None: all
    rows in order): one layer's live part is all a call reads, never a copy of the cache."""
    plane = jax.lax.dynamic_index_in_dim(x, layer, axis=0, keepdims=False)
    if rows is not None:
        plane = jnp.take(plane, rows, axis=0, mode="clip")
    if kv_len is not None and kv_len < plane.shape[2]:
        plane = jax.lax.slice_in_dim(plane, 0, kv_len, axis=2)
    return plane


def grouped_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float
) -> jax.Array:
    """Softmax attention with `KV` shared key/value heads, without copying them per query head.

    q: [B, T, H, hd]; k, v: heads-major [B, KV, S, hd] (the cache's layout); mask: [B, 1, T, S].
    The H query heads are grouped as [KV, H // KV] against the unexpanded keys (a generic GQA
    kernel repeats K/V to H heads, which at decode time copies the whole cache every step).
    Logits and softmax run in float32; fully masked rows (padding) get a uniform distribution
    instead of NaNs.
    """
    b, t, h, hd = q.shape
    kv = k.shape[1]
    qg = q.reshape(b, t, kv, h // kv, hd)
    logits = jnp.einsum("btkgd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    # A plain batched matmul ([B, KV] batch, then [G, T] x [S] x [hd]); its small output is
    # moved to token-major afterwards.
    out = jnp.einsum("bkgts,bksd->bkgtd", probs, v)
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, hd)


def causal_block_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, scale: float, block: int
) -> jax.Array:
    """Training attention (no cache) in query blocks of `block` tokens, each against only the keys
    up to its own end.

    Same result as `grouped_attention` (on K/V moved heads-major) with
    `training_mask(segment_ids)`, but (1) the causal upper triangle beyond each block is never
    computed (about half the FLOPs at long lengths) and
    (2) each block's [KV, G, block, S] logits stay small enough to live in cache, where the dense
    [T, T] logits stream through memory several times (softmax, mask, backward). Heads-major
    layout keeps both einsums plain batched matmuls (bench/NOTES.md, "Training attention in causal query blocks").
    """
    b, t, h, hd = q.shape
    kv = k.shape[2]
    if block <= 0 or t <= block:
        return grouped_attention(
            q, k.swapaxes(1, 2), v.swapaxes(1, 2), training_mask(segment_ids), scale
        )
    qg = q.reshape(b, t, kv, h // kv, hd).transpose(0, 2, 3, 1, 4)  # [B, KV, G, T, hd]
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, KV, S, hd]
    key_seg = segment_ids[:, None, None, None, :]  # [B, 1, 1, 1, S]
    outs = []
    for start in range(0, t, block):
        end = min(start + block, t)
        logits = (
            jnp.einsum(
                "bkgtd,bksd->bkgts",
                qg[:, :, :, start:end],
                kt[:, :, :end],
                preferred_element_type=jnp.float32,
            )
            * scale
        )
        query_seg = segment_ids[:, None, None, start:end, None]  # [B, 1, 1, blk, 1]
        causal = jnp.arange(start, end)[:, None] >= jnp.arange(end)[None, :]
        mask = causal & (query_seg == key_seg[..., :end]) & (key_seg[..., :end] != 0)
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        outs.append(jnp.einsum("bkgts,bksd->bkgtd", probs, vt[:, :, :end]))
    out = jnp.concatenate(outs, axis=3)  # [B, KV, G, T, hd]
    return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, hd)


class Attention(nnx.Module):
    """Multi-head attention with `num_kv_heads` shared key/value heads (GQA)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, h, kv, hd = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
        pdt = config.weight_dtype
        self.dtype = config.compute_dtype
        self.head_dim = hd
        self.block = config.attention_block
        self.impl = config.attention_impl
        self.decode_impl = config.decode_attention_impl
        # A tuple (static, hashable), not an array: it is a constant of the architecture.
        self.inv_freq = tuple(
            float(f) for f in inverse_frequencies(hd, config.rope_theta, config.rope_scaling)
        )
        self.q = make_param(
            rngs, default_kernel_init, (d, h, hd), pdt, ("embed", "heads", "head_dim")
        )
        self.k = make_param(
            rngs, default_kernel_init, (d, kv, hd), pdt, ("embed", "kv_heads", "head_dim")
        )
        self.v = make_param(
            rngs, default_kernel_init, (d, kv, hd), pdt, ("embed", "kv_heads", "head_dim")
        )
        self.o = make_param(
            rngs, default_kernel_init, (h, hd, d), pdt, ("heads", "head_dim", "embed")
        )
        adapter = functools.partial(lora_lib.make_adapter, config.lora, rngs=rngs)
        self.q_lora = adapter("q_proj", (d,), (h, hd), ("embed",), ("heads", "head_dim"))
        self.k_lora = adapter("k_proj", (d,), (kv, hd), ("embed",), ("kv_heads", "head_dim"))
        self.v_lora = adapter("v_proj", (d,), (kv, hd), ("embed",), ("kv_heads", "head_dim"))
        self.o_lora = adapter("o_proj", (h, hd), (d,), ("heads", "head_dim"), ("embed",))
        if config.attention_bias:
            zeros = nnx.initializers.zeros
            self.q_bias = make_param(rngs, zeros, (h, hd), pdt, ("heads", "head_dim"))
            self.k_bias = make_param(rngs, zeros, (kv, hd), pdt, ("kv_heads", "head_dim"))
            self.v_bias = make_param(rngs, zeros, (kv, hd), pdt, ("kv_heads", "head_dim"))
        else:
            self.q_bias = self.k_bias = self.v_bias = None
        if config.qk_norm:
            norm = dict(eps=config.rms_norm_eps, dtype=self.dtype, param_dtype=pdt, rngs=rngs)
            # A per-head norm has a head_dim-sized scale: never shard it on the fsdp axis.
            self.q_norm = RMSNorm(hd, axes=("head_dim",), **norm)
            self.k_norm = RMSNorm(hd, axes=("head_dim",), **norm)
        else:
            self.q_norm = self.k_norm = None

    def _training_impl(self, length: int) -> str:
        """The training attention `attention_impl` resolves to for this length: "auto" is a
        fused kernel where the target platform has one that takes these shapes, else XLA."""
        if self.impl != "auto":
            return self.impl
        platform = splash.target_platform()
        if platform == "tpu" and splash.supports(length):
            return "splash"
        if platform in ("gpu", "cuda") and cudnn_attention.supports(self.head_dim, self.dtype):
            return "cudnn"
        return "xla"

    def _decode_impl(self, decode: bool, kv_len: int, max_len: int, rows) -> str:
        """The cached attention for this call: the Pallas kernel only for the sampler's decode
        (one token per row, no segment ids: a learner's cache path passes them and is
        differentiated, which the kernel has no rule for; no cache_rows: prefill's padding rows
        share a row, and the kernel writes each row's own), where TPU tiling allows its blocks;
        "auto" only when compiled for a TPU."""
        if not decode or self.decode_impl == "xla":
            return "xla"
        fits = rows is None and decode_attention.block_size(kv_len, max_len) is not None
        if self.decode_impl == "pallas":
            if not fits:
                raise ValueError(
                    f"decode_attention_impl='pallas' cannot run kv_len={kv_len} of a "
                    f"{max_len}-slot cache{'' if rows is None else ' with cache_rows'}"
                )
            return "pallas"
        return "pallas" if fits and splash.target_platform() == "tpu" else "xla"

    def _cached(self, q, k, v, positions, decode, cache, layer, cache_rows, kv_len):
        """Attention through the cache: write this call's keys, then attend each row's slots
        (the kernel does both, so XLA never scatters into the cache: see its docstring)."""
        max_len = cache["k"].shape[CACHE_SLOT_AXIS]
        live = max_len if kv_len is None else min(kv_len, max_len)
        scale = self.head_dim**-0.5
        if self._decode_impl(decode, live, max_len, cache_rows) == "pallas":
            out, ck, cv = decode_attention.decode_attention(
                q, k, v, cache["k"], cache["v"], layer, cache_rows, positions, scale, live
            )
            new_cache = {
                "k": with_logical_constraint(ck, CACHE_LOGICAL_AXES),
                "v": with_logical_constraint(cv, CACHE_LOGICAL_AXES),
            }
            return out.astype(self.dtype), new_cache
        rows = jnp.arange(q.shape[0]) if cache_rows is None else cache_rows
        new_cache = write_cache(cache, layer, rows, k, v, positions)
        k, v = (
            read_cache(new_cache[n], layer, cache_rows, kv_len).astype(self.dtype)
            for n in ("k", "v")
        )
        return grouped_attention(q, k, v, cache_mask(positions, k.shape[2]), scale), new_cache

    def _project(self, x, kernel, bias, adapter, axes):
        y = jnp.einsum("btd,dnh->btnh", x, kernel[...].astype(self.dtype))
        y = lora_lib.add_delta(y, adapter, x, self.dtype)
        if bias is not None:
            y = y + bias[...].astype(self.dtype)
        return with_logical_constraint(y, axes)

    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        segment_ids: jax.Array | None,
        cache: Cache | None = None,
        layer: jax.Array | int = 0,
        cache_rows: jax.Array | None = None,
        kv_len: int | None = None,
    ) -> tuple[jax.Array, Cache | None]:
        """`cache` is the whole stacked cache: batch row b reads and writes plane `layer`, row
        `cache_rows[b]` (default b), attending its slots [0, kv_len) (default all)."""
        heads, kv_heads = (
            ("batch", "length", "heads", "head_dim"),
            ("batch", "length", "kv_heads", "head_dim"),
        )
        q = self._project(x, self.q, self.q_bias, self.q_lora, heads)
        k = self._project(x, self.k, self.k_bias, self.k_lora, kv_heads)
        v = self._project(x, self.v, self.v_bias, self.v_lora, kv_heads)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q, positions, self.inv_freq)
        k = apply_rope(k, positions, self.inv_freq)

        if cache is None:
            seg = segment_ids if segment_ids is not None else jnp.ones(x.shape[:2], jnp.int32)
            scale = self.head_dim**-0.5
            blocks = functools.partial(causal_block_attention, scale=scale, block=self.block)
            impl = self._training_impl(x.shape[1])
            if impl == "splash":
                out = splash.splash_attention(q, k, v, seg, scale)
            elif impl == "cudnn":
                out = cudnn_attention.cudnn_attention(q, k, v, seg, scale, blocks)
            else:
                out = blocks(q, k, v, seg)
            new_cache = None
        else:
            decode = x.shape[1] == 1 and segment_ids is None
            out, new_cache = self._cached(
                q, k, v, positions, decode, cache, layer, cache_rows, kv_len
            )
        out = with_logical_constraint(out, ("batch", "length", "heads", "head_dim"))
        y = jnp.einsum("btnh,nhd->btd", out, self.o[...].astype(self.dtype))
        return lora_lib.add_delta(y, self.o_lora, out, self.dtype), new_cache


def init_cache(
    num_layers: int, batch: int, max_len: int, num_kv_heads: int, head_dim: int, dtype: Any
) -> Cache:
    shape = (num_layers, batch, num_kv_heads, max_len, head_dim)
    return {
        "k": with_logical_constraint(jnp.zeros(shape, dtype), CACHE_LOGICAL_AXES),
        "v": with_logical_constraint(jnp.zeros(shape, dtype), CACHE_LOGICAL_AXES),
    }
