"""cuDNN flash attention (GPU) for attention without a cache (training, learner forwards).

Why: on a GPU the XLA path (`attention.causal_block_attention`) writes [query block, T] float32
logits per head to memory and back several times (mask, softmax, backward), and its unrolled
query blocks grow the program with T; cuDNN's fused kernel keeps the logits on chip with an
online softmax, skips the causal blocks above the diagonal, and is one custom call whatever T.

Contract (same as `causal_block_attention`): q [B, T, H, hd], k/v [B, T, KV, hd], segment_ids
[B, T] (0 = padding); causal within a segment; padding outputs are never read (here they are 0).

Packing, and why the private ragged layout: `jax.nn.dot_product_attention` can say "one document
from t=0, then padding" (per-row lengths, the PADDING_CAUSAL mask) but not "several documents in
a row"; its `mask` argument becomes a [B, 1, T, T] additive bias whose gradient jax 0.10.2
always asks cuDNN for, the T x T memory flash attention exists to avoid. cuDNN's own answer is
the ragged (packed) layout: per row, the start and length of each of up to M segments, each a
causal sequence of its own, tokens outside every segment attended by none. jax exposes it only in
`jax._src.cudnn.fused_attention_stablehlo.dot_product_attention` (`q_offsets`/`kv_offsets`,
`q_seqlen`/`kv_seqlen`), which this module calls. So:
  * a row's segments are its runs of equal nonzero ids, at most `max_segments` (M, static: it
    sizes the kernel's per-segment softmax statistics, [B * M, H, T] float32). M defaults to
    MAX_SEGMENTS on Hopper or newer (jax refuses the ragged layout before Hopper) and to 1
    before it: one document from t=0 per row, through the public per-row-length call;
  * a batch the layout cannot express (a row with more than M runs, an id that reappears or
    decreases along the row, for M = 1 a document not starting at t=0) runs `fallback`
    instead, chosen per call with `lax.cond`, so no batch is ever silently mis-masked;
  * grouped-query heads: the public call takes K/V with fewer heads as they are; the ragged call
    gets K/V repeated to the query heads, because jax 0.10.2 (`_fix_seqlen_offsets`) scales the
    key offsets by the QUERY heads x head_dim, which is the K/V token stride only when they
    have as many heads as the queries;
  * tokens outside every segment are never written by the kernel, forward or backward: q/k/v
    enter and the output leaves through `jnp.where` on real tokens, so padding outputs and the
    padding rows of dq/dk/dv are exact zeros, never what the buffers held.

cuDNN's limits as jax 0.10.2 checks them (`check_layout`, `check_is_flash_attention`): q/k/v in
bfloat16 or float16 (other dtypes are cast to bfloat16 for the call), head_dim a multiple of 8
and <= 128 (<= 256 on Hopper or newer), the ragged layout on Hopper or newer only; jax's own
packed-layout test skips below cuDNN 9.6.

Sharding: `jax.shard_map` over the batch and KV-head mesh axes the logical rules give (as
`splash.py`), not XLA's partitioner: jax's custom partitioning of the cuDNN call requires q, k
and v with one and the same spec and refuses a sharded sequence, which GQA heads and the
sequence-parallel rules do not guarantee; inside the map each device sees whole sequences and
whole KV groups. `implementation="xla"` runs the same plumbing (segment runs, offsets, K/V
repeat, padding zeros, fallback, shard_map) with XLA's attention, the ragged layout turned into
the dense mask it means, so CPU tests check everything but the kernel itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax._src.cudnn import fused_attention_stablehlo as _cudnn
from jax.sharding import PartitionSpec

from eigen_jax.sharding import logical_to_spec

MAX_SEGMENTS = 16  # ragged-layout segments per row on Hopper+: a larger M costs stats memory
_HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))

Fallback = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def hopper_or_newer() -> bool:
    """Whether this process's GPU has compute capability >= 9.0 (False without a local GPU,
    e.g. a deviceless compile: only the layout every cuDNN GPU supports is then assumed)."""
    for device in jax.local_devices():
        capability = getattr(device, "compute_capability", None)
        if device.platform == "gpu" and capability is not None:
            return float(capability) >= 9.0
    return False


def supports(head_dim: int, dtype) -> bool:
    """cuDNN flash attention takes these q/k/v (what `attention_impl="auto"` asks on a GPU)."""
    limit = 256 if hopper_or_newer() else 128
    return jnp.dtype(dtype) in _HALF and head_dim % 8 == 0 and head_dim <= limit


def default_max_segments() -> int:
    return MAX_SEGMENTS if hopper_or_newer() else 1


def segment_layout(
    segment_ids: jax.Array, max_segments: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The ragged layout of each row: (offsets [B, M+1], lengths [B, M], fits [B]).

    Segments are the runs of equal nonzero ids, in order; offsets/lengths hold each run's start
    and token count, -1 past the row's last run (jax's format, M+1 offsets included). `fits` is
    False where the layout would not mean `segment_ids`: more than M runs, a run whose id is not
    above every id before it (an id reappearing after a gap must see its earlier tokens), or,
    for M = 1, a run that does not start at t=0 (the per-row-length call assumes it does).
    """
    t = segment_ids.shape[1]
    seg = segment_ids
    before = jnp.pad(seg[:, :-1], ((0, 0), (1, 0)))
    start = (seg != 0) & (seg != before)
    run = jnp.cumsum(start, axis=1, dtype=jnp.int32) - 1  # a token's run (-1: none yet)
    n_runs = run[:, -1] + 1
    max_before = jnp.pad(jax.lax.cummax(seg, axis=1)[:, :-1], ((0, 0), (1, 0)))
    fits = (n_runs <= max_segments) & jnp.all(~start | (seg > max_before), axis=1)
    if max_segments == 1:
        fits &= (n_runs == 0) | start[:, 0]
    cols = jnp.arange(max_segments, dtype=jnp.int32)
    member = (run[:, :, None] == cols) & (seg != 0)[:, :, None]  # [B, T, M]
    lengths = jnp.sum(member, axis=1, dtype=jnp.int32)
    starts = jnp.min(jnp.where(member, jnp.arange(t, dtype=jnp.int32)[:, None], t), axis=1)
    present = cols[None, :] < n_runs[:, None]
    lengths = jnp.where(present, lengths, -1)
    offsets = jnp.pad(jnp.where(present, starts, -1), ((0, 0), (0, 1)), constant_values=-1)
    return offsets, lengths, fits


def ragged_mask(offsets: jax.Array, lengths: jax.Array, length: int) -> jax.Array:
    """[B, 1, T, T]: key j visible to query i iff both lie in the same segment of the layout
    (causality is the attention call's `is_causal`); what the ragged layout tells cuDNN."""
    pos = jnp.arange(length, dtype=jnp.int32)
    lo, n = offsets[:, :-1, None], lengths[:, :, None]
    inside = (pos >= lo) & (pos < lo + n) & (n > 0)  # [B, M, T]
    member = jnp.where(jnp.any(inside, axis=1), jnp.argmax(inside, axis=1), -1)
    return ((member[:, :, None] == member[:, None, :]) & (member[:, None, :] >= 0))[:, None]


def _ragged(q, k, v, offsets, lengths, scale, implementation):
    group = q.shape[2] // k.shape[2]
    k, v = (jnp.repeat(x, group, axis=2) for x in (k, v))  # see the module docstring (GQA)
    if implementation == "xla":
        mask = ragged_mask(offsets, lengths, q.shape[1])
        return jax.nn.dot_product_attention(
            q, k, v, mask=mask, scale=scale, is_causal=True, implementation="xla"
        )
    return _cudnn.dot_product_attention(
        q,
        k,
        v,
        q_seqlen=lengths,
        kv_seqlen=lengths,
        q_offsets=offsets,
        kv_offsets=offsets,
        scale=scale,
        mask_type=_cudnn.MaskType.PADDING_CAUSAL,
        qkv_layout="BTNH",
    )


def _local(q, k, v, segment_ids, *, scale, fallback, max_segments, implementation):
    """One device's attention: the fused call when the layout expresses the batch, else
    `fallback` (same arguments)."""
    offsets, lengths, fits = segment_layout(segment_ids, max_segments)
    real = (segment_ids != 0)[:, :, None, None]

    def fused(q, k, v, segment_ids):
        dtype = q.dtype
        call_dtype = dtype if implementation == "xla" or dtype in _HALF else jnp.bfloat16
        q, k, v = (jnp.where(real, x, 0).astype(call_dtype) for x in (q, k, v))
        if max_segments == 1:
            n = jnp.maximum(lengths[:, 0], 0)
            out = jax.nn.dot_product_attention(
                q,
                k,
                v,
                scale=scale,
                is_causal=True,
                query_seq_lengths=n,
                key_value_seq_lengths=n,
                implementation=implementation,
            )
        else:
            out = _ragged(q, k, v, offsets, lengths, scale, implementation)
        return jnp.where(real, out, 0).astype(dtype)

    return jax.lax.cond(jnp.all(fits), fused, fallback, q, k, v, segment_ids)


def cudnn_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    segment_ids: jax.Array,
    scale: float,
    fallback: Fallback,
    *,
    max_segments: int | None = None,
    implementation: str = "cudnn",
) -> jax.Array:
    """Causal, segment-masked GQA attention through cuDNN; [B, T, H, hd] out.

    `fallback(q, k, v, segment_ids)` (e.g. `causal_block_attention` with its scale and block)
    runs for a batch the cuDNN layout cannot express; `max_segments` defaults to
    `default_max_segments()`; `implementation="xla"` swaps only the kernel (tests on a CPU).
    """
    if implementation not in ("cudnn", "xla"):
        raise ValueError(f"implementation={implementation!r}; expected 'cudnn' or 'xla'")
    m = default_max_segments() if max_segments is None else max_segments
    if m < 1:
        raise ValueError(f"max_segments must be >= 1, got {m}")
    local = functools.partial(
        _local, scale=scale, fallback=fallback, max_segments=m, implementation=implementation
    )
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return local(q, k, v, segment_ids)
    b, t, h, hd = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, t, kv, h // kv, hd)  # a device keeps whole KV groups of query heads
    q_spec = logical_to_spec(("batch", None, "kv_heads", None, None), qg.shape, mesh)
    kv_spec = logical_to_spec(("batch", None, "kv_heads", None), k.shape, mesh)

    def grouped(qg, k, v, seg):
        lb, lt, lkv, g, d = qg.shape
        return local(qg.reshape(lb, lt, lkv * g, d), k, v, seg).reshape(qg.shape)

    out = jax.shard_map(
        grouped,
        mesh=mesh,
        in_specs=(q_spec, kv_spec, kv_spec, PartitionSpec(q_spec[0], None)),
        out_specs=q_spec,
        check_vma=False,
    )(qg, k, v, segment_ids)
    return out.reshape(b, t, h, hd)
