"""cuDNN attention's plumbing on the CPU (segment runs -> ragged layout, K/V repeat, padding zeros,
the fallback, shard_map) through its `implementation="xla"` twin, against the XLA query-block
path: forward and gradients, packed segments with padding, GQA ratios 1/2/4, on a mesh. The
cuDNN path is lowered for a CUDA target without a GPU; the kernel itself is checked against the
XLA path only where a GPU is present (skipped elsewhere)."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax._src.cudnn import fused_attention_stablehlo as fa

from eigen_jax import sharding
from eigen_jax.models import ModelConfig, Transformer, get_config, splash
from eigen_jax.models import cudnn_attention as ca
from eigen_jax.models.attention import Attention, causal_block_attention

T, H, HD = 256, 4, 32
SCALE = HD**-0.5
ON_GPU = jax.default_backend() == "gpu"
blocks = functools.partial(causal_block_attention, scale=SCALE, block=64)


def _segments(layout):
    """Two rows of T tokens. packed: three documents then padding | one filling the row;
    unpacked: one document then padding | one filling the row; reused: id 1 again after a gap
    (it must see its earlier tokens, which the ragged layout cannot say)."""
    seg = np.zeros((2, T), np.int32)
    seg[1] = 1
    if layout == "packed":
        seg[0, :90], seg[0, 90:170], seg[0, 170:230] = 1, 2, 3
    elif layout == "unpacked":
        seg[0, :200] = 1
    else:
        seg[0, :90], seg[0, 100:180] = 1, 1
    return jnp.asarray(seg)


def _inputs(kv, dtype=jnp.float32, seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    q = jax.random.normal(ks[0], (2, T, H, HD), dtype)
    k = jax.random.normal(ks[1], (2, T, kv, HD), dtype)
    v = jax.random.normal(ks[2], (2, T, kv, HD), dtype)
    return q, k, v


def test_segment_layout():
    seg = jnp.asarray(
        [
            [1, 1, 2, 2, 2, 0, 0, 0],  # two documents, padding
            [0, 0, 0, 0, 0, 0, 0, 0],  # all padding
            [0, 0, 1, 1, 1, 1, 0, 0],  # a document not at t=0
            [1, 1, 0, 2, 2, 0, 3, 3],  # padding between documents
            [1, 1, 2, 2, 1, 1, 0, 0],  # id 1 reappears
            [2, 2, 1, 1, 0, 0, 0, 0],
        ],  # ids decrease
        jnp.int32,
    )
    offsets, lengths, fits = ca.segment_layout(seg, 3)
    np.testing.assert_array_equal(
        offsets,
        [[0, 2, -1, -1], [-1] * 4, [2, -1, -1, -1], [0, 3, 6, -1], [0, 2, 4, -1], [0, 2, -1, -1]],
    )
    np.testing.assert_array_equal(
        lengths, [[2, 3, -1], [-1] * 3, [4, -1, -1], [2, 2, 2], [2, 2, 2], [2, 2, -1]]
    )
    np.testing.assert_array_equal(fits, [True, True, True, True, False, False])
    _, _, fits = ca.segment_layout(seg, 2)
    np.testing.assert_array_equal(fits, [True, True, True, False, False, False])
    _, lengths, fits = ca.segment_layout(seg, 1)  # one document from t=0 (or none) per row
    np.testing.assert_array_equal(fits, [False, True, False, False, False, False])
    np.testing.assert_array_equal(lengths[:2, 0], [2, -1])


def _mesh():
    """(data 1, fsdp 2, tensor 2) over the 8 fake CPU devices of the test set-up; skipped on a
    host with fewer devices (a one-GPU host running the GPU tests)."""
    if len(jax.devices()) < 4:
        pytest.skip("needs 4 devices")
    return sharding.make_mesh((1, 2, 2), devices=jax.devices()[:4])


def _never(q, k, v, seg):
    """A fallback that must not run: NaNs would fail every comparison."""
    return jnp.full(q.shape, jnp.nan, q.dtype)


@pytest.mark.parametrize("kv", [4, 2, 1])
@pytest.mark.parametrize(
    "layout,max_segments,fused",
    [
        ("packed", 4, True),
        ("unpacked", 1, True),
        ("unpacked", 4, True),
        ("packed", 2, False),
        ("packed", 1, False),
        ("reused", 4, False),
    ],
)
def test_xla_twin_matches_blocks(kv, layout, max_segments, fused):
    """Forward and gradients equal the query-block path's; `fused` cases must not fall back,
    the others must (their layout cannot express the batch). Padding outputs and the padding
    rows of dq/dk/dv are exactly zero on the fused path."""
    q, k, v = _inputs(kv)
    seg = _segments(layout)
    real = (seg > 0)[:, :, None, None]
    w = jax.random.normal(jax.random.PRNGKey(9), q.shape)
    fn = functools.partial(
        ca.cudnn_attention,
        segment_ids=seg,
        scale=SCALE,
        fallback=_never if fused else blocks,
        max_segments=max_segments,
        implementation="xla",
    )

    def loss(f, q, k, v):  # padding outputs carry no weight, as in training
        return jnp.sum(jnp.where(real, f(q, k, v) * w, 0))

    ref = lambda q, k, v: blocks(q, k, v, seg)  # noqa: E731
    out = jax.jit(fn)(q, k, v)
    np.testing.assert_allclose(
        np.where(real, out, 0), np.where(real, ref(q, k, v), 0), atol=2e-6, rtol=1e-5
    )
    grads = jax.jit(jax.grad(lambda *a: loss(fn, *a), argnums=(0, 1, 2)))(q, k, v)
    want = jax.grad(lambda *a: loss(ref, *a), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(grads, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-5)
    if fused:
        assert not np.any(np.where(real, 0, out))
        for g in grads:
            assert not np.any(np.where(real, 0, g))


@pytest.mark.parametrize("max_segments", [1, 4])
def test_on_a_mesh(max_segments):
    """shard_mapped over (fsdp 2, tensor 2): batch and KV heads split, same numbers; layouts
    that fuse and one that falls back."""
    q, k, v = _inputs(2)
    mesh = _mesh()
    seg = jnp.concatenate([_segments("unpacked"), _segments("packed")])
    q, k, v = (jnp.concatenate([x, x[::-1]]) for x in (q, k, v))
    real = (seg > 0)[:, :, None, None]
    fn = jax.jit(
        functools.partial(
            ca.cudnn_attention,
            scale=SCALE,
            fallback=blocks,
            max_segments=max_segments,
            implementation="xla",
        )
    )
    with jax.set_mesh(mesh):
        out = fn(q, k, v, seg)
    np.testing.assert_allclose(
        np.where(real, out, 0), np.where(real, blocks(q, k, v, seg), 0), atol=2e-6, rtol=1e-5
    )


def _packed_loss():
    """Mean next-token loss of a model on a fixed packed batch of 2 rows (padding excluded)."""
    ids = jnp.asarray(np.random.RandomState(0).randint(3, 256, (2, T)), jnp.int32)
    seg = _segments("packed")

    def loss(model):
        logits = model(ids, segment_ids=seg)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), ids[:, 1:, None], -1)
        return jnp.sum(nll[..., 0] * (seg[:, 1:] > 0)) / jnp.sum(seg[:, 1:] > 0)

    return loss


@pytest.mark.parametrize("on_mesh", [False, True])
def test_model_with_cudnn_twin_equals_xla(monkeypatch, on_mesh):
    """`attention_impl="cudnn"` through a whole Qwen3 (scanned layers, full remat, GQA 2) with
    the kernel swapped for its XLA twin: same loss and gradients as the query-block model on a
    packed batch, on one device and shard_mapped over (fsdp 2, tensor 2)."""
    monkeypatch.setattr(
        ca,
        "cudnn_attention",
        functools.partial(ca.cudnn_attention, max_segments=4, implementation="xla"),
    )
    loss = _packed_loss()

    out = {}
    for impl in ("xla", "cudnn"):
        model = Transformer(
            get_config("tiny-qwen3", attention_impl=impl, remat="full"), rngs=nnx.Rngs(0)
        )
        fn = jax.jit(nnx.value_and_grad(loss))
        if not on_mesh:
            out[impl] = fn(model)
        else:
            mesh = _mesh()
            with jax.set_mesh(mesh):
                out[impl] = fn(sharding.shard_model(model, mesh))
    for a, b in zip(jax.tree.leaves(out["cudnn"]), jax.tree.leaves(out["xla"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=1e-4)


def test_auto_picks_cudnn_on_gpu_for_half_precision(monkeypatch):
    monkeypatch.setattr(splash, "target_platform", lambda: "gpu")
    pick = lambda **kw: Attention(
        get_config("tiny-qwen3", **kw),  # noqa: E731
        rngs=nnx.Rngs(0),
    )._training_impl(T)
    assert pick(dtype="bfloat16") == "cudnn"
    assert pick(dtype="float16") == "cudnn"
    assert pick(dtype="float32") == "xla"
    assert pick(dtype="bfloat16", head_dim=12) == "xla"  # not a multiple of 8
    assert pick(dtype="bfloat16", head_dim=160) == "xla"  # > 128 before Hopper
    monkeypatch.setattr(ca, "hopper_or_newer", lambda: True)
    assert pick(dtype="bfloat16", head_dim=160) == "cudnn"
    assert pick(dtype="float32", attention_impl="cudnn") == "cudnn"
    monkeypatch.setattr(splash, "target_platform", lambda: "cpu")
    assert pick(dtype="bfloat16") == "xla"


@pytest.mark.parametrize(
    "max_segments,mask,operands", [(1, "PADDING_CAUSAL", 5), (4, "PADDING_CAUSAL", 7)]
)
def test_lowers_for_cuda(monkeypatch, max_segments, mask, operands):
    """Without a GPU: the forward and backward cuDNN custom calls of the training gradient,
    lowered for CUDA (jax's cuDNN version and compute-capability probes answered as on a
    Hopper GPU with cuDNN 9.8): per-row lengths (q, k, v, 2 lengths) or the ragged layout
    (+ 2 offset tensors, max_seg_per_batch = M), padding-causal either way."""
    monkeypatch.setattr(fa, "check_cudnn_version", lambda: 90800)
    monkeypatch.setattr(fa, "check_compute_capability", lambda capability: True)
    shapes = [
        jax.ShapeDtypeStruct(s, jnp.bfloat16) for s in ((2, T, H, HD), (2, T, 2, HD), (2, T, 2, HD))
    ]

    def loss(q, k, v, seg):
        out = ca.cudnn_attention(q, k, v, seg, SCALE, blocks, max_segments=max_segments)
        return jnp.sum(out.astype(jnp.float32))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    text = (
        grad.trace(*shapes, jax.ShapeDtypeStruct((2, T), jnp.int32))
        .lower(lowering_platforms=("cuda",))
        .as_text()
    )
    calls = re.findall(r"custom_call @(__cudnn\$fmha\w+)\(([^)]*)\)", text)
    assert sorted({name for name, _ in calls}) == [
        "__cudnn$fmhaSoftmax",
        "__cudnn$fmhaSoftmaxBackward",
    ]
    forward = [args for name, args in calls if name == "__cudnn$fmhaSoftmax"]
    assert all(len(args.split(",")) == operands for args in forward)
    config = text.replace("\\22", '"')  # MLIR escapes the backend config's quotes
    assert f'"max_seg_per_batch": {max_segments},' in config
    assert f'"mask_type": "{mask}"' in config


def test_lowers_for_cuda_per_device_on_a_mesh(monkeypatch):
    """Under a (fsdp 2, tensor 2) mesh each device's cuDNN call gets its half of the batch and
    of the KV groups (4 query heads -> 2; K/V repeated to them), its rows' offsets [2, M+1] and
    per-segment statistics [2 * M, 2, T]."""
    monkeypatch.setattr(fa, "check_cudnn_version", lambda: 90800)
    monkeypatch.setattr(fa, "check_compute_capability", lambda capability: True)
    mesh = _mesh()
    shapes = [
        jax.ShapeDtypeStruct(s, jnp.bfloat16) for s in ((4, T, H, HD), (4, T, 2, HD), (4, T, 2, HD))
    ]

    def loss(q, k, v, seg):
        out = ca.cudnn_attention(q, k, v, seg, SCALE, blocks, max_segments=4)
        return jnp.sum(out.astype(jnp.float32))

    with jax.set_mesh(mesh):
        text = (
            jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
            .trace(*shapes, jax.ShapeDtypeStruct((4, T), jnp.int32))
            .lower(lowering_platforms=("cuda",))
            .as_text()
        )
    call = re.search(r"custom_call @__cudnn\$fmhaSoftmax\(.*", text).group(0)
    local = f"tensor<2x{T}x2x{HD}xbf16>"
    assert (
        f"({local}, {local}, {local}, tensor<2x4xi32>, tensor<2x4xi32>, tensor<2x5xi32>, "
        f"tensor<2x5xi32>) -> (tensor<2x2x{T}x{HD}xbf16>, tensor<8x2x{T}xf32>,"
    ) in call


def test_config_accepts_cudnn():
    assert get_config("tiny-qwen3", attention_impl="cudnn").attention_impl == "cudnn"
    with pytest.raises(ValueError, match="attention_impl"):
        get_config("tiny-qwen3", attention_impl="flash")
    assert (
        ModelConfig.from_hf_config(
            get_config("tiny-llama").to_hf_config(), attention_impl="cudnn"
        ).attention_impl
        == "cudnn"
    )


@pytest.mark.skipif(not ON_GPU, reason="cuDNN attention needs a CUDA GPU")
@pytest.mark.parametrize("kv", [4, 2, 1])
@pytest.mark.parametrize("layout", ["packed", "unpacked", "reused"])
def test_cudnn_matches_xla_on_gpu(kv, layout):
    """The kernel (default max_segments for this GPU) against the XLA path in float32 on the
    same bfloat16 inputs: forward and gradients on real tokens, bfloat16 tolerance."""
    q, k, v = _inputs(kv, jnp.bfloat16)
    seg = _segments(layout)
    real = (seg > 0)[:, :, None, None]
    w = jax.random.normal(jax.random.PRNGKey(9), q.shape)
    f32 = lambda q, k, v: blocks(*(x.astype(jnp.float32) for x in (q, k, v)), seg)  # noqa: E731
    fused = lambda q, k, v: ca.cudnn_attention(q, k, v, seg, SCALE, blocks)  # noqa: E731

    def loss(f, q, k, v):
        return jnp.sum(jnp.where(real, f(q, k, v).astype(jnp.float32) * w, 0))

    out = jax.jit(fused)(q, k, v).astype(jnp.float32)
    np.testing.assert_allclose(
        np.where(real, out, 0), np.where(real, f32(q, k, v), 0), atol=3e-2, rtol=3e-2
    )
    got = jax.jit(jax.grad(lambda *a: loss(fused, *a), argnums=(0, 1, 2)))(q, k, v)
    want = jax.jit(jax.grad(lambda *a: loss(f32, *a), argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(got, want):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.abs(a - b).max() <= 3e-2 * max(np.abs(b).max(), 1.0)


@pytest.mark.skipif(not ON_GPU, reason="cuDNN attention needs a CUDA GPU")
def test_model_with_cudnn_equals_xla_on_gpu():
    """A bf16 Qwen3 (q/k norm, GQA 2) on a packed batch: loss and gradients with cuDNN vs XLA
    attention agree to bfloat16 tolerance."""
    loss = _packed_loss()

    out = {}
    for impl in ("xla", "cudnn"):
        model = Transformer(
            get_config("tiny-qwen3", dtype="bfloat16", attention_impl=impl), rngs=nnx.Rngs(0)
        )
        out[impl] = jax.jit(nnx.value_and_grad(loss))(model)
    np.testing.assert_allclose(out["cudnn"][0], out["xla"][0], rtol=2e-2)
    for a, b in zip(jax.tree.leaves(out["cudnn"][1]), jax.tree.leaves(out["xla"][1])):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.abs(a - b).max() <= 5e-2 * max(np.abs(b).max(), 1e-3)
