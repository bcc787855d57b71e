"""Sparse mixture-of-experts MLP (Qwen3-MoE): float32 router, top-k experts, grouped matmuls.

Routing follows HF's `Qwen3MoeTopKRouter`: softmax over the router logits (computed in float32
here, whatever the compute dtype), the top `k` probabilities, renormalised to sum to one when
`norm_topk_prob`. Two expert computations give the same numbers:
  * "ragged": each token's k assignments sorted by expert, then three grouped matmuls
    (`jax.lax.ragged_dot`, a grouped-matmul kernel on TPU) over the sorted rows: FLOPs are the
    active experts' only, and no token is dropped;
  * "tiled": the same grouped matmuls as one batched matmul over tiles of rows that each belong
    to one expert; what "auto" runs on a CPU, where `ragged_dot` has no grouped kernel;
  * "dense": every expert on every token, weighted by the routing (k/E of the work is useful);
    the reference the tests compare the other two with.

Under a mesh the layer is `shard_map`ped: tokens stay on the devices their batch rows live on;
each device gathers the experts (sharded over the `expert` logical axis, like FSDP) for its own
tokens, keeps its tensor-parallel slice of the expert hidden dimension and sums the partial
outputs over that axis. Expert weights travel, tokens do not: no all-to-all, and the sort is
local. (`check_vma` is off: gathered weights are the same on every device of the gather,
which the replication checker cannot infer from a public collective.) The router statistics
(assignments and probability mass per expert over real tokens) come back summed over the mesh,
for the load-balancing loss and the logged expert load.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec

from eigen_jax.models import lora as lora_lib
from eigen_jax.models.config import ModelConfig
from eigen_jax.models.layers import default_kernel_init, make_param
from eigen_jax.sharding import logical_to_spec

ROUTER_AXES = ("embed", None)
EXPERT_IN_AXES = ("expert", "embed", "mlp")  # gate, up: [E, D, F]
EXPERT_OUT_AXES = ("expert", "mlp", "embed")  # down: [E, F, D]
RouterStats = dict[str, jax.Array]  # {"counts": [E], "probs": [E], "tokens": []} (sums)


def route(x: jax.Array, router: jax.Array, k: int, norm_topk_prob: bool):
    """Per token: (all expert probabilities [N, E] f32, top-k weights [N, k], expert ids)."""
    logits = jnp.einsum("nd,de->ne", x.astype(jnp.float32), router.astype(jnp.float32))
    probs = jax.nn.softmax(logits, axis=-1)
    weights, ids = jax.lax.top_k(probs, k)
    if norm_topk_prob:
        weights = weights / weights.sum(axis=-1, keepdims=True)
    return probs, weights, ids


def ragged_experts(x, ids, weights, gate, up, down):
    """SwiGLU experts over the token-expert assignments sorted by expert (grouped matmuls)."""
    n, k = ids.shape
    flat = ids.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    sizes = jnp.bincount(flat, length=gate.shape[0]).astype(jnp.int32)
    rows = jnp.take(x, order // k, axis=0)  # [N*k, D]
    hidden = jax.nn.silu(jax.lax.ragged_dot(rows, gate, sizes)) * jax.lax.ragged_dot(
        rows, up, sizes
    )
    out = jax.lax.ragged_dot(hidden, down, sizes)  # [N*k, D] by expert
    out = jnp.take(out, jnp.argsort(order), axis=0).reshape(n, k, -1)  # back to token order
    return jnp.einsum("nkd,nk->nd", out, weights.astype(out.dtype))


def tiled_experts(x, ids, weights, gate, up, down):
    """The grouped matmuls as one batched matmul over expert-aligned tiles: the sorted
    assignments are laid out with each expert's rows padded to a whole number of tiles, so every
    tile belongs to one expert, whose weights it gathers. Padding costs at most E x (tile - 1)
    rows; the gathered weights cost a [tiles, D, F] copy, fine on a CPU (TPU/GPU use ragged)."""
    n, k = ids.shape
    e, d, m = gate.shape[0], x.shape[1], ids.size
    tile = int(min(128, max(8, 1 << max(0, (-(-m // e) - 1).bit_length()))))
    flat = ids.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    sizes = jnp.bincount(flat, length=e)
    padded = (sizes + tile - 1) // tile * tile
    ends = jnp.cumsum(padded)
    by_expert = flat[order]
    rank = jnp.arange(m) - (jnp.cumsum(sizes) - sizes)[by_expert]
    dest = ends[by_expert] - padded[by_expert] + rank  # slot of each row
    num_tiles = -(-(m + e * (tile - 1)) // tile)
    rows = jnp.zeros((num_tiles * tile, d), x.dtype).at[dest].set(jnp.take(x, order // k, axis=0))
    owner = jnp.minimum(jnp.searchsorted(ends, jnp.arange(num_tiles) * tile, side="right"), e - 1)
    tiles = rows.reshape(num_tiles, tile, d)
    hidden = jax.nn.silu(jnp.einsum("tbd,tdf->tbf", tiles, gate[owner])) * jnp.einsum(
        "tbd,tdf->tbf", tiles, up[owner]
    )
    out = jnp.einsum("tbf,tfd->tbd", hidden, down[owner]).reshape(-1, d)
    out = jnp.take(out, dest, axis=0)  # sorted order
    out = jnp.take(out, jnp.argsort(order), axis=0).reshape(n, k, d)  # token order
    return jnp.einsum("nkd,nk->nd", out, weights.astype(out.dtype))


def dense_experts(x, ids, weights, gate, up, down):
    """Every expert on every token, combined with the routing weights (zero off the top k)."""
    combine = jnp.einsum(
        "nke,nk->ne", jax.nn.one_hot(ids, gate.shape[0], dtype=x.dtype), weights.astype(x.dtype)
    )
    hidden = jax.nn.silu(jnp.einsum("nd,edf->enf", x, gate)) * jnp.einsum("nd,edf->enf", x, up)
    return jnp.einsum("enf,efd,ne->nd", hidden, down, combine)


_EXPERTS = {"ragged": ragged_experts, "tiled": tiled_experts, "dense": dense_experts}


def router_stats(probs: jax.Array, ids: jax.Array, mask: jax.Array) -> RouterStats:
    """Sums over real tokens (mask 1): top-k assignments and probability mass per expert."""
    counts = jnp.einsum("nke,n->e", jax.nn.one_hot(ids, probs.shape[-1], dtype=jnp.float32), mask)
    return {"counts": counts, "probs": jnp.einsum("ne,n->e", probs, mask), "tokens": mask.sum()}


def zero_stats(num_experts: int) -> RouterStats:
    return {
        "counts": jnp.zeros((num_experts,), jnp.float32),
        "probs": jnp.zeros((num_experts,), jnp.float32),
        "tokens": jnp.zeros((), jnp.float32),
    }


def load_balancing_loss(stats: RouterStats) -> jax.Array:
    """HF's `load_balancing_loss_func` (Switch Transformer eq. 4-6) from summed statistics:
    E * sum_e (assignments_e / tokens) * (probability_e / tokens); 1.0 when perfectly even
    for k = 1 (k when each token picks k experts)."""
    tokens = jnp.maximum(stats["tokens"], 1.0)
    return stats["counts"].shape[-1] * jnp.sum(stats["counts"] / tokens * stats["probs"] / tokens)


def expert_load(stats: RouterStats) -> dict[str, float]:
    """Host-side metrics from summed statistics: max/min share of the assignments an expert
    got, relative to an even split (1.0 = balanced)."""
    counts = jnp.asarray(stats["counts"], jnp.float32)
    share = counts * counts.shape[-1] / jnp.maximum(counts.sum(), 1.0)
    return {
        "router/max_load": float(share.max()),
        "router/min_load": float(share.min()),
        "router/aux_loss": float(load_balancing_loss(stats)),
    }


class SparseMoE(nnx.Module):
    """Router [D, E] and `num_experts` SwiGLU experts ([E, D, F], [E, D, F], [E, F, D])."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, e, f = config.hidden_size, config.num_experts, config.moe_intermediate_size
        pdt = config.weight_dtype
        self.dtype = config.compute_dtype
        self.k = config.num_experts_per_tok
        self.num_experts = e
        self.norm_topk_prob = config.norm_topk_prob
        self.impl = config.moe_impl
        self.router = make_param(rngs, default_kernel_init, (d, e), pdt, ROUTER_AXES)
        self.gate = make_param(rngs, default_kernel_init, (e, d, f), pdt, EXPERT_IN_AXES)
        self.up = make_param(rngs, default_kernel_init, (e, d, f), pdt, EXPERT_IN_AXES)
        self.down = make_param(rngs, default_kernel_init, (e, f, d), pdt, EXPERT_OUT_AXES)
        # Adapters merged into the weights per layer (`models.lora`): the kernels take weights.
        adapter = lambda name, i, o, ia, oa, experts=e: lora_lib.make_adapter(  # noqa: E731
            config.lora,
            name,
            (i,),
            (o,),
            (ia,),
            (oa,),
            rngs,
            experts=experts if name == "experts" else 0,
        )
        self.router_lora = adapter("router", d, e, "embed", None)
        self.gate_lora = adapter("experts", d, f, "embed", "mlp")
        self.up_lora = adapter("experts", d, f, "embed", "mlp")
        self.down_lora = adapter("experts", f, d, "mlp", "embed")

    def __call__(self, x: jax.Array, mask: jax.Array) -> tuple[jax.Array, RouterStats]:
        """x [B, T, D], mask [B, T] (1 = real token, counted in the statistics)."""
        dt = self.dtype
        merge = lora_lib.merged_weight
        weights = [
            merge(self.router[...], self.router_lora),
            merge(self.gate[...], self.gate_lora).astype(dt),
            merge(self.up[...], self.up_lora).astype(dt),
            merge(self.down[...], self.down_lora).astype(dt),
        ]
        mesh = jax.sharding.get_abstract_mesh()
        if mesh is None or mesh.empty:
            return self._local(x, mask.astype(jnp.float32), *weights, reduce=None)
        spec = lambda axes, a: logical_to_spec(axes, a.shape, mesh)  # noqa: E731
        x_spec = spec(("batch", None, None), x)
        w_specs = (
            spec(ROUTER_AXES, weights[0]),
            spec(EXPERT_IN_AXES, weights[1]),
            spec(EXPERT_IN_AXES, weights[2]),
            spec(EXPERT_OUT_AXES, weights[3]),
        )
        reduce = {
            "batch": _axes(x_spec[0]),
            "mlp": _axes(w_specs[1][2]),
            "gather": [
                [_axes(s) if i != mlp else () for i, s in enumerate(ws)]
                for ws, mlp in zip(w_specs, (None, 2, 2, 1))
            ],
        }
        stats_spec = {
            "counts": PartitionSpec(),
            "probs": PartitionSpec(),
            "tokens": PartitionSpec(),
        }
        local = lambda *a: self._local(*a, reduce=reduce)  # noqa: E731
        mapped = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(x_spec, PartitionSpec(x_spec[0], None)) + w_specs,
            out_specs=(x_spec, stats_spec),
            check_vma=False,
        )
        return mapped(x, mask.astype(jnp.float32), *weights)

    def _local(self, x, mask, router, gate, up, down, reduce):
        """One device's tokens through the experts; `reduce` names the mesh axes to gather the
        weights over and to sum the outputs/statistics over (None: no mesh)."""
        if reduce is not None:
            router, gate, up, down = (
                _gather(w, axes) for w, axes in zip((router, gate, up, down), reduce["gather"])
            )
        b, t, d = x.shape
        tokens = x.reshape(b * t, d)
        probs, top_w, ids = route(tokens, router, self.k, self.norm_topk_prob)
        out = _EXPERTS[self._impl()](tokens, ids, top_w, gate, up, down).reshape(b, t, d)
        stats = router_stats(probs, ids, mask.reshape(-1))
        if reduce is not None:
            if reduce["mlp"]:
                out = jax.lax.psum(out, reduce["mlp"])
            if reduce["batch"]:
                stats = jax.lax.psum(stats, reduce["batch"])
        return out, stats

    def _impl(self) -> str:
        if self.impl != "auto":
            return self.impl
        from eigen_jax.models.splash import target_platform

        return "tiled" if target_platform() == "cpu" else "ragged"


def _axes(entry) -> tuple[str, ...]:
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def _gather(w: jax.Array, axes_per_dim) -> jax.Array:
    for dim, axes in enumerate(axes_per_dim):
        if axes:
            w = jax.lax.all_gather(w, axes, axis=dim, tiled=True)
    return w
