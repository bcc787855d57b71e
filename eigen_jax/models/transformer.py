"""Decoder-only transformer (Llama 3.x / Qwen2 / Qwen3) in Flax NNX, layers scanned.

Public contract (the sampler and trainer build on exactly this):

    model = Transformer(config, rngs=nnx.Rngs(0))
    model(input_ids, positions=None, segment_ids=None, cache=None, return_hidden=False,
          cache_rows=None, kv_len=None)
      cache None   -> logits [B, T, V] float32
      cache given  -> (logits, new_cache); batch row b uses cache row cache_rows[b] (default
                      b; an out-of-range row writes nothing) and attends slots [0, kv_len)
      return_hidden -> final-normed hidden states [B, T, D] in place of logits
    model.project(hidden) -> float32 logits (lets callers compute log-probs in vocab chunks)
    model.init_cache(batch, max_len, dtype=None) -> {"k", "v"}, each [L, B, KV, S, hd]

The decoder blocks are ONE `DecoderBlock` whose parameters carry a leading `layers` axis
(logical name "layers"). `config.scan_layers` runs them with `jax.lax.scan`, so the program holds
one block whatever the depth (compile time and program size stop growing with it); off, a Python
loop over the same stacked parameters unrolls them (same numbers, one program per layer).

With a cache, token (b, t) is written to slot positions[b, t] and attends slots <= that position
(segment_ids are not used). `cache_rows` and `kv_len` (static) let the sampler run a few rows of
a large cache, on its live prefix only, reading one layer's part at a time and scattering the
new keys in place (the stacked cache is never copied whole; the CPU decode path of
`split_layers` splits it once per call). Give padding tokens positions that do not collide with
real ones:
keep counting past the row's length (those slots are overwritten before they are ever attended)
or use positions >= max_len (such writes are dropped).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from eigen_jax.models import lora as lora_lib
from eigen_jax.models.attention import Attention, Cache, init_cache
from eigen_jax.models.config import ModelConfig
from eigen_jax.models.layers import MLP, RMSNorm, default_kernel_init, make_param
from eigen_jax.models.moe import RouterStats, SparseMoE, zero_stats
from eigen_jax.sharding import with_logical_constraint

# The residual stream between blocks (what full remat saves per layer) is sequence-parallel over
# the tensor axis: replicated across tensor shards it would hold a whole sequence per layer on
# each (a 32k-token Qwen3-32B step on v6e-128 did not fit: launch/compile.py, bench/NOTES.md).
_ACT = ("batch", "activation_length", "embed")
_REMAT_POLICY = {
    "full": None,  # save nothing inside the block
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class DecoderBlock(nnx.Module):
    """Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(x)).

    The MLP is dense SwiGLU or the sparse mixture of experts (`config.sparse_layers`). A model
    that mixes both kinds gives every stacked layer both (the unused one stays zero: HF import
    fills it so, export skips it) and picks per layer, so one scanned block still serves every
    layer; the released Qwen3-MoE models are sparse throughout and carry no dense MLP at all.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        norm = dict(
            eps=config.rms_norm_eps,
            dtype=config.compute_dtype,
            param_dtype=config.weight_dtype,
            rngs=rngs,
        )
        self.attn_norm = RMSNorm(config.hidden_size, **norm)
        self.attn = Attention(config, rngs=rngs)
        self.mlp_norm = RMSNorm(config.hidden_size, **norm)
        kinds = set(config.sparse_layers)
        self.mlp = MLP(config, rngs=rngs) if False in kinds else None
        self.moe = SparseMoE(config, rngs=rngs) if True in kinds else None

    def __call__(
        self,
        x,
        positions,
        segment_ids,
        cache=None,
        layer=0,
        cache_rows=None,
        kv_len=None,
        sparse=False,
    ):
        """`sparse` (a bool, traced under scan) picks the MoE in a mixed model. Returns
        (x, cache, router statistics or None)."""
        with lora_lib.for_layer(layer):  # per-layer adapter dropout masks (training only)
            attn_out, new_cache = self.attn(
                self.attn_norm(x), positions, segment_ids, cache, layer, cache_rows, kv_len
            )
            x = with_logical_constraint(x + attn_out, _ACT)
            mlp_out, stats = self._mlp(self.mlp_norm(x), segment_ids, sparse)
        x = with_logical_constraint(x + mlp_out, _ACT)
        return x, new_cache, stats

    def _mlp(self, h, segment_ids, sparse):
        if self.moe is None:
            return self.mlp(h), None
        mask = (
            jnp.ones(h.shape[:2], jnp.float32)
            if segment_ids is None
            else (segment_ids > 0).astype(jnp.float32)
        )
        if self.mlp is None:
            return self.moe(h, mask)
        dense = lambda: (self.mlp(h), zero_stats(self.moe.num_experts))  # noqa: E731
        if isinstance(sparse, bool):
            return self.moe(h, mask) if sparse else dense()
        return jax.lax.cond(sparse, lambda: self.moe(h, mask), dense)


def stacked_blocks(config: ModelConfig, rngs: nnx.Rngs) -> DecoderBlock:
    """`num_layers` independently initialised blocks as one block with stacked parameters; every
    parameter's logical axes gain a leading "layers" (replicated by the sharding rules)."""
    keys = jax.random.split(rngs.params(), config.num_layers)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: DecoderBlock(config, rngs=nnx.Rngs(0))))
    state = jax.vmap(lambda key: nnx.state(DecoderBlock(config, rngs=nnx.Rngs(key))))(keys)

    def add_layer_axis(v: nnx.Variable) -> nnx.Variable:
        axes = v.get_metadata().get("out_sharding") or (None,) * (v.ndim - 1)
        return v.replace(out_sharding=("layers",) + tuple(axes))

    state = jax.tree.map(add_layer_axis, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.merge(graphdef, state)


def _sum_stats(per_layer: list) -> RouterStats | None:
    per_layer = [s for s in per_layer if s is not None]
    return jax.tree.map(lambda *s: sum(s), *per_layer) if per_layer else None


class Transformer(nnx.Module):
    """Token embedding, `num_layers` decoder blocks, final RMSNorm, (tied or untied) LM head."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        d, v, pdt = config.hidden_size, config.vocab_size, config.weight_dtype
        self.embed = make_param(rngs, default_kernel_init, (v, d), pdt, ("vocab", "embed"))
        self.layers = stacked_blocks(config, rngs)
        self.final_norm = RMSNorm(
            d, config.rms_norm_eps, dtype=config.compute_dtype, param_dtype=pdt, rngs=rngs
        )
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = make_param(rngs, default_kernel_init, (d, v), pdt, ("embed", "vocab"))

    # ------------------------------------------------------------------ forward
    def __call__(
        self,
        input_ids: jax.Array,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: Cache | None = None,
        return_hidden: bool = False,
        cache_rows: jax.Array | None = None,
        kv_len: int | None = None,
        layer_params: list | None = None,
        return_router_stats: bool = False,
    ):
        """`layer_params` (`split_layers`) with `cache` as a per-layer list (`split_cache`): the
        blocks run over those per-layer arrays instead of slices of the stacks (the CPU
        sampler's decode loop, which would copy a layer's slice in every step).
        `return_router_stats`: also return the MoE router statistics summed over the sparse
        layers (`moe.RouterStats`, None for a dense model) as `(result, stats)`."""
        positions = self._check_inputs(input_ids, positions, segment_ids, cache)
        dt = self.config.compute_dtype
        x = jnp.take(self.embed[...], input_ids, axis=0).astype(dt)
        x = with_logical_constraint(x, _ACT)
        if layer_params is None:
            x, new_cache, stats = self._run_blocks(
                x, positions, segment_ids, cache, cache_rows, kv_len
            )
        else:
            x, new_cache, stats = self._run_split(x, positions, cache, layer_params, kv_len)
        hidden = self.final_norm(x)
        out = hidden if return_hidden else self.project(hidden)
        result = out if cache is None else (out, new_cache)
        return (result, stats) if return_router_stats else result

    def _run_blocks(self, x, positions, segment_ids, cache, cache_rows=None, kv_len=None):
        """All decoder blocks over (x, cache): scanned, or unrolled over the same parameters.

        The cache rides in the carry and each layer scatters only its new keys into it (as scan
        outputs, every layer's whole plane would be rewritten per step). Blocks are
        rematerialised per the config when differentiated: in training, and in learners that
        run the cache path (shared prefixes); undifferentiated (the sampler), remat lowers to the
        plain block.
        """
        graphdef, params = nnx.split(self.layers)

        def body(carry, per_layer):
            h, c = carry
            layer_params, i, sparse = per_layer
            h, c, stats = nnx.merge(graphdef, layer_params)(
                h, positions, segment_ids, c, i, cache_rows, kv_len, sparse
            )
            return (h, c), stats

        cfg = self.config
        if cfg.remat != "none":
            body = jax.checkpoint(
                body, policy=_REMAT_POLICY[cfg.remat], prevent_cse=not cfg.scan_layers
            )
        carry = (x, cache)
        if cfg.scan_layers:
            carry, stats = jax.lax.scan(
                body, carry, (params, jnp.arange(cfg.num_layers), jnp.asarray(cfg.sparse_layers))
            )
            stats = jax.tree.map(lambda s: s.sum(0), stats)
        else:
            stats = []
            for i, layer_params in enumerate(self.split_layers()):
                carry, layer_stats = body(carry, (layer_params, jnp.int32(i), cfg.sparse_layers[i]))
                stats.append(layer_stats)
            stats = _sum_stats(stats)
        return carry + (stats,)

    # ------------------------------------------------------------------ per-layer arrays
    def split_layers(self) -> list:
        """Each layer's parameter state as arrays of its own. Why: XLA's CPU backend copies a
        layer's slice of the stacked weights before every use inside a loop, so a decode step
        read every weight twice (bench/NOTES.md); the CPU sampler keeps these between calls."""
        params = nnx.state(self.layers)
        return [jax.tree.map(lambda a, i=i: a[i], params) for i in range(self.config.num_layers)]

    @staticmethod
    def split_cache(cache: Cache) -> list[Cache]:
        """The stacked cache as per-layer caches of one layer each ([1, B, KV, S, hd])."""
        return [
            jax.tree.map(lambda x, i=i: x[i : i + 1], cache) for i in range(cache["k"].shape[0])
        ]

    @staticmethod
    def join_cache(caches: list[Cache]) -> Cache:
        return jax.tree.map(lambda *planes: jnp.concatenate(planes, axis=0), *caches)

    def _run_split(self, x, positions, caches, layer_params, kv_len):
        """The blocks over per-layer weights and per-layer caches (undifferentiated: no remat)."""
        graphdef = nnx.graphdef(self.layers)
        new_caches, stats = [], []
        for params, cache, sparse in zip(layer_params, caches, self.config.sparse_layers):
            x, cache, layer_stats = nnx.merge(graphdef, params)(
                x, positions, None, cache, 0, None, kv_len, sparse
            )
            new_caches.append(cache)
            stats.append(layer_stats)
        return x, new_caches, _sum_stats(stats)

    def project(self, hidden: jax.Array) -> jax.Array:
        """Final-normed hidden states [..., D] -> float32 logits [..., V]."""
        dt = self.config.compute_dtype
        if self.lm_head is None:
            logits = jnp.einsum(
                "...d,vd->...v",
                hidden.astype(dt),
                self.embed[...].astype(dt),
                preferred_element_type=jnp.float32,
            )
        else:
            logits = jnp.einsum(
                "...d,dv->...v",
                hidden.astype(dt),
                self.lm_head[...].astype(dt),
                preferred_element_type=jnp.float32,
            )
        if logits.ndim == 3:
            logits = with_logical_constraint(logits, ("batch", "length", "vocab"))
        return logits.astype(jnp.float32)

    def init_cache(self, batch: int, max_len: int, dtype: Any = None) -> Cache:
        """Zeroed KV cache: {"k", "v"}, each [num_layers, batch, num_kv_heads, max_len,
        head_dim]. A plain pytree, so it can be jitted, donated and sharded like any array."""
        cfg = self.config
        dtype = cfg.compute_dtype if dtype is None else dtype
        return init_cache(cfg.num_layers, batch, max_len, cfg.num_kv_heads, cfg.head_dim, dtype)

    # ------------------------------------------------------------------ validation
    def _check_inputs(self, input_ids, positions, segment_ids, cache) -> jax.Array:
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, length], got shape {input_ids.shape}")
        if not jnp.issubdtype(input_ids.dtype, jnp.integer):
            raise TypeError(f"input_ids must be integers, got {input_ids.dtype}")
        for name, arr in (("positions", positions), ("segment_ids", segment_ids)):
            if arr is not None and tuple(arr.shape) != tuple(input_ids.shape):
                raise ValueError(
                    f"{name} shape {tuple(arr.shape)} != input_ids shape {tuple(input_ids.shape)}"
                )
        if cache is not None:
            layers = len(cache) if isinstance(cache, list) else cache["k"].shape[0]
            if layers != self.config.num_layers:
                raise ValueError(f"cache has {layers} layers, model has {self.config.num_layers}")
        if positions is None:
            b, t = input_ids.shape
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32)[None], (b, t))
        return positions
