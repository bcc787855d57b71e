"""Pallas TPU flash-decode attention over the sampler's stacked heads-major KV cache, which
also writes the step's new key/value into it.

Why an own kernel: jax's `paged_attention` wants each layer's keys as [KV, pages, page, hd];
the cache is [L, B, KV, S, hd] (layer-stacked for the scanned decoder, heads-major for the XLA
dots), so every layer of every step would copy its plane to use it. This kernel reads the
stacked cache in place: the layer, each row's cache row and its live length ride in as scalar
prefetch, so a (row, KV head) program fetches only the key/value blocks below the row's length
(the block index is clamped to the last live block, which the pipeline does not fetch again) and
skips their compute; the XLA path reads all `kv_len` slots of every row each step.
Why it writes too: with XLA's scatter in the decode loop, XLA keeps the cache slot-major there
(its layout for the scatter) and copied it to the kernel's row-major layout for every layer
(and, on the XLA path, into and out of the loop: an extra cache-sized buffer, bench/NOTES.md).
The new key lands in the row's last live block, which the kernel holds anyway: it puts it there
and writes back the 16-slot tile that holds it (the cache aliased in and out), so XLA never
scatters into the cache.

Contract (as `attention.write_cache`, then `grouped_attention` with `cache_mask`, for one token
per row): the token at position p of batch row b is written to slot p of cache row `rows[b]` in
plane `layer` and attends slots [0, p]; a row with p >= kv_len (inactive) writes nothing and
gets zeros, where the XLA path averages its slots: the sampler never reads those. All G = H / KV
query heads of a group run in one program against their shared K/V block, with an online
softmax in float32 VMEM scratch; the probabilities meet V in V's dtype, as on the XLA path.
Slots above a row's length inside its last live block are masked; the cache holds finite values
there (zeros or stale keys), as the XLA path also assumes.
Under a mesh it is `shard_map`ped over the batch and KV-head axes (as `splash`), each shard
reading and writing its own cache rows; on a CPU it runs in Pallas TPU interpret mode (tests).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.sharding import PartitionSpec

from eigen_jax.models.splash import target_platform
from eigen_jax.sharding import logical_to_spec

BLOCK = 512  # slots per key/value block: 2 x 512 x 128 bf16 = 256 KiB per buffer in VMEM
SUBLANES = 16  # a bf16 block's slot count must be a multiple of the packed sublane tile
LANES = 128


def block_size(kv_len: int, max_len: int, block: int = BLOCK) -> int | None:
    """The slots per block for attending [0, kv_len) of a max_len cache; None if TPU tiling
    allows none (the caller then keeps the XLA path)."""
    bs = min(block, kv_len)
    if bs != max_len and bs % SUBLANES:
        return None
    return bs if pl.cdiv(kv_len, bs) * bs <= max_len else None


def last_block(length, bs: int):
    """A row's last live block (block 0 for an empty row): where its new slot lands."""
    return jnp.maximum(pl.cdiv(length, bs) - 1, 0)


def written_tile(length, ws: int):
    """The ws-slot tile holding a row's new slot, length - 1 (tile 0 for an empty row)."""
    return jnp.maximum(length - 1, 0) // ws


def fetched_block(j, length, bs: int):
    """The key/value block grid step j fetches: j, clamped to the row's last live block, so the
    steps past it repeat an index and the pipeline fetches nothing."""
    return jnp.minimum(j, last_block(length, bs))


def _kernel(
    layer_ref,
    rows_ref,
    lens_ref,
    q_ref,
    kn_ref,
    vn_ref,
    k_ref,
    v_ref,
    o_ref,
    ko_ref,
    vo_ref,
    m_ref,
    l_ref,
    acc_ref,
    *,
    scale: float,
    bs: int,
    ws: int,
):
    b, j = pl.program_id(0), pl.program_id(2)
    length = lens_ref[b]

    @pl.when(j == 0)
    def _init():
        m_ref[...] = jnp.full(m_ref.shape, -jnp.inf, jnp.float32)
        l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
        acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

    # The token's own key/value go to slot length - 1, inside its last live block: put them
    # into that block as it is read, and write back the ws-slot tile that holds the slot (an
    # empty row's tile 0 goes back unchanged).
    row = j * bs + jax.lax.broadcasted_iota(jnp.int32, k_ref.shape, 0)
    k = jnp.where(row == length - 1, kn_ref[...], k_ref[...])  # [bs, hd]
    v = jnp.where(row == length - 1, vn_ref[...], v_ref[...])

    @pl.when(j == last_block(length, bs))
    def _write():
        tile = written_tile(length, ws)
        start = pl.multiple_of(tile * ws - j * bs, ws)
        put = tile * ws + jax.lax.broadcasted_iota(jnp.int32, ko_ref.shape, 0) == length - 1
        ko_ref[...] = jnp.where(put, kn_ref[...], k_ref[pl.ds(start, ws), :])
        vo_ref[...] = jnp.where(put, vn_ref[...], v_ref[pl.ds(start, ws), :])

    @pl.when(j * bs < length)
    def _block():
        q = q_ref[...]  # [G, hd]
        dims = (((1,), (1,)), ((), ()))
        s = jax.lax.dot_general(q, k, dims, preferred_element_type=jnp.float32) * scale
        slot = j * bs + jax.lax.broadcasted_iota(jnp.int32, s.shape, 1)
        s = jnp.where(slot < length, s, jnp.finfo(jnp.float32).min)
        m_prev = m_ref[...]  # [G, LANES], every lane the same
        m_next = jnp.maximum(m_prev, jnp.max(s, axis=1, keepdims=True))
        alpha = jnp.exp(m_prev - m_next)
        p = jnp.exp(s - m_next[:, :1])
        l_ref[...] = alpha * l_ref[...] + jnp.sum(p, axis=1, keepdims=True)
        pv = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)
        acc_ref[...] = alpha[:, :1] * acc_ref[...] + pv
        m_ref[...] = m_next

    @pl.when(j == pl.num_programs(2) - 1)
    def _finish():
        total = l_ref[...][:, :1]
        safe = jnp.where(total > 0, total, 1.0)
        o_ref[...] = jnp.where(total > 0, acc_ref[...] / safe, 0.0).astype(o_ref.dtype)


def _call(qg, k_new, v_new, cache_k, cache_v, layer, rows, lengths, scale, kv_len, bs, interpret):
    """The pallas_call on one shard: qg [B, KV, G, hd], k/v_new [B, KV, 1, hd], caches
    [L, Bc, KV, S, hd] (updated in place: aliased to the 2nd and 3rd outputs)."""
    b, kv, g, hd = qg.shape
    nblocks = pl.cdiv(kv_len, bs)
    ws = SUBLANES if bs % SUBLANES == 0 else bs  # slots written back per row and head

    def kv_index(i, h, j, layer_ref, rows_ref, lens_ref):
        return layer_ref[0], rows_ref[i], h, fetched_block(j, lens_ref[i], bs), 0

    def write_index(i, h, j, layer_ref, rows_ref, lens_ref):  # constant over j: one write-back
        return layer_ref[0], rows_ref[i], h, written_tile(lens_ref[i], ws), 0

    def head_index(i, h, j, *_):
        return i, h, 0, 0

    q_spec = pl.BlockSpec((None, None, g, hd), head_index)
    new_spec = pl.BlockSpec((None, None, 1, hd), head_index)
    kv_spec = pl.BlockSpec((None, None, None, bs, hd), kv_index)
    write_spec = pl.BlockSpec((None, None, None, ws, hd), write_index)
    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=3,
        grid=(b, kv, nblocks),
        in_specs=[q_spec, new_spec, new_spec, kv_spec, kv_spec],
        out_specs=[q_spec, write_spec, write_spec],
        scratch_shapes=[
            pltpu.VMEM((g, LANES), jnp.float32),
            pltpu.VMEM((g, LANES), jnp.float32),
            pltpu.VMEM((g, hd), jnp.float32),
        ],
    )
    itemsize = cache_k.dtype.itemsize
    cost = pl.CostEstimate(  # every row at full kv_len: an upper bound, lengths are run-time
        flops=4 * b * kv * g * kv_len * hd,
        transcendentals=b * kv * g * kv_len,
        bytes_accessed=2 * b * kv * (kv_len + ws) * hd * itemsize + 2 * qg.size * qg.dtype.itemsize,
    )
    return pl.pallas_call(
        functools.partial(_kernel, scale=scale, bs=bs, ws=ws),
        grid_spec=grid_spec,
        out_shape=[
            jax.ShapeDtypeStruct(qg.shape, qg.dtype),
            jax.ShapeDtypeStruct(cache_k.shape, cache_k.dtype),
            jax.ShapeDtypeStruct(cache_v.shape, cache_v.dtype),
        ],
        input_output_aliases={6: 1, 7: 2},  # the caches (after 3 scalars, q, k_new, v_new)
        compiler_params=pltpu.CompilerParams(
            dimension_semantics=("parallel", "parallel", "arbitrary")
        ),
        cost_estimate=cost,
        name="decode_attention",
        interpret=pltpu.InterpretParams() if interpret else False,
    )(layer, rows, lengths, qg, k_new, v_new, cache_k, cache_v)


def decode_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    cache_k: jax.Array,
    cache_v: jax.Array,
    layer: jax.Array | int,
    rows: jax.Array | None,
    positions: jax.Array,
    scale: float,
    kv_len: int,
    block: int = BLOCK,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Writes each row's new key/value (k, v [B, 1, KV, hd]) to slot `position` of its cache row
    and attends slots [0, position]: ([B, 1, H, hd] out, cache_k, cache_v updated in place).

    cache_k/v: the stacked cache [L, Bc, KV, S, hd]; rows [B] (None: row b is cache row b) must
    be distinct and in range, as each row writes its own; positions [B, 1]; kv_len (static)
    bounds the slots any row reads or writes (a position >= kv_len writes nothing, as
    `steps.decode_steps` requires). Under a mesh `rows` must be None (a row's cache row lives
    on the row's own shard only when the two are the same row).
    """
    b, t, h, hd = q.shape
    kv, max_len = cache_k.shape[2], cache_k.shape[3]
    if t != 1:
        raise ValueError(f"decode attention takes one token per row, got {t}")
    bs = block_size(kv_len, max_len, block)
    if bs is None:
        raise ValueError(f"no TPU block tiles kv_len={kv_len} of a {max_len}-slot cache")
    pos = positions[:, 0].astype(jnp.int32)
    lengths = jnp.where(pos < kv_len, pos + 1, 0)
    qg = q.reshape(b, kv, h // kv, hd).astype(cache_k.dtype)
    k_new, v_new = (x.reshape(b, kv, 1, hd).astype(cache_k.dtype) for x in (k, v))
    layer = jnp.asarray(layer, jnp.int32).reshape(1)
    call = functools.partial(
        _call, scale=scale, kv_len=kv_len, bs=bs, interpret=target_platform() == "cpu"
    )
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        rows = jnp.arange(b, dtype=jnp.int32) if rows is None else rows.astype(jnp.int32)
        rows = jnp.clip(rows, 0, cache_k.shape[1] - 1)
        out, ck, cv = call(qg, k_new, v_new, cache_k, cache_v, layer, rows, lengths)
        return out.reshape(b, 1, h, hd), ck, cv
    if rows is not None:
        raise ValueError("under a mesh, decode attention reads each row's own cache row")

    def local(qg, k_new, v_new, ck, cv, layer, lengths):
        own = jnp.arange(qg.shape[0], dtype=jnp.int32)
        return call(qg, k_new, v_new, ck, cv, layer, own, lengths)

    spec = lambda axes, x: logical_to_spec(axes, x.shape, mesh)  # noqa: E731
    q_spec = spec(("batch", "kv_heads", None, None), qg)
    cache_spec = spec((None, "batch", "kv_heads", None, None), cache_k)
    if (q_spec[0], q_spec[1]) != (cache_spec[1], cache_spec[2]):
        raise ValueError(f"rows and heads of q ({q_spec}) and cache ({cache_spec}) split apart")
    out, ck, cv = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(
            q_spec,
            q_spec,
            q_spec,
            cache_spec,
            cache_spec,
            PartitionSpec(),
            PartitionSpec(q_spec[0]),
        ),
        out_specs=(q_spec, cache_spec, cache_spec),
        check_vma=False,
    )(qg, k_new, v_new, cache_k, cache_v, layer, lengths)
    return out.reshape(b, 1, h, hd), ck, cv
