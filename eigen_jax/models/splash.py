"""Pallas splash attention (TPU) for attention without a cache (training, learner forwards).

Why: the XLA path materialises [query block, T] logits per head and, unrolled over query
blocks, grows the program with T; splash streams key blocks through VMEM with an online softmax
(memory linear in T, causal blocks above the diagonal skipped) and is one kernel whatever T.

Contract (same as `attention.causal_block_attention`): q [B, T, H, hd], k/v [B, T, KV, hd],
segment_ids [B, T] (0 = padding); causal within a segment. Grouped-query heads run as
multi-query kernels, one per KV head, on the unexpanded K/V. Padding queries (segment 0) attend
other padding instead of nothing: their outputs are never read (zero loss weight), and no real
token attends padding. Under a mesh the kernel is `shard_map`ped over the batch and KV-head
axes the logical rules give those dimensions, so it composes with FSDP/TP sharding; on a CPU it
runs in Pallas interpret mode (tests check it against the XLA path).
"""

from __future__ import annotations

import jax
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
from jax.sharding import PartitionSpec

from eigen_jax.sharding import logical_to_spec

LANES = 128  # splash tiles the sequence in multiples of the TPU lane width


def target_platform() -> str:
    """The platform the program being traced is compiled for: the mesh's devices when a mesh
    is set (a deviceless TPU compile runs on a CPU host), else the default backend."""
    mesh = jax.sharding.get_abstract_mesh()
    device = None if mesh is None or mesh.empty else getattr(mesh, "abstract_device", None)
    return device.platform if device is not None else jax.default_backend()


def supports(length: int) -> bool:
    return length % LANES == 0


def _kernel(length: int, group: int, block: int, interpret: bool):
    mask = sm.MultiHeadMask([sm.CausalMask((length, length)) for _ in range(group)])
    sizes = sk.BlockSizes(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        block_q_dq=block,
        block_kv_dq=block,
    )
    # Built inside each trace, not cached: its block tables become arrays of that trace (a
    # cached kernel would leak the tracers of the trace that first built it).
    return sk.make_splash_mqa_single_device(mask, block_sizes=sizes, interpret=interpret)


def splash_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, scale: float, block: int = 512
) -> jax.Array:
    """Causal, segment-masked GQA attention through the splash kernel; [B, T, H, hd] out."""
    b, t, h, hd = q.shape
    kv = k.shape[2]
    if not supports(t):
        raise ValueError(f"splash attention needs a length that is a multiple of {LANES}, got {t}")
    block = min(block, t)
    while t % block:
        block //= 2
    platform = target_platform()
    kernel = _kernel(t, h // kv, block, platform == "cpu")
    qg = (q * scale).reshape(b, t, kv, h // kv, hd).transpose(0, 2, 3, 1, 4)  # [B, KV, G, T, hd]
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, KV, T, hd]

    def local(qg, kt, vt, seg):
        def one_row(qr, kr, vr, sr):
            ids = sk.SegmentIds(q=sr, kv=sr)
            return jax.vmap(lambda qh, kh, vh: kernel(qh, kh, vh, segment_ids=ids))(qr, kr, vr)

        return jax.vmap(one_row)(qg, kt, vt, seg)

    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        out = local(qg, kt, vt, segment_ids)
    else:
        spec = lambda axes, x: logical_to_spec(axes, x.shape, mesh)  # noqa: E731
        q_spec = spec(("batch", "kv_heads", None, None, None), qg)
        kv_spec = spec(("batch", "kv_heads", None, None), kt)
        seg_spec = PartitionSpec(q_spec[0], None)
        out = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(q_spec, kv_spec, kv_spec, seg_spec),
            out_specs=q_spec,
            check_vma=False,
        )(qg, kt, vt, segment_ids)
    return out.astype(q.dtype).transpose(0, 3, 1, 2, 4).reshape(b, t, h, hd)
