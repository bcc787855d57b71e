"""The Pallas decode kernel against the XLA cached attention.

On the CPU the kernel runs in Pallas TPU interpret mode (`pltpu.InterpretParams`: scalar
prefetch, clamped block indices and VMEM scratch interpreted as on a TPU, out-of-bounds reads
raising): per-row lengths, GQA ratios 1/2/4, cache-row permutations, f32 and bf16, the sampler's
decode on one device and on a mesh. What interpret mode cannot check (Mosaic's TPU tiling, its
lowering inside the scanned decode loop for a real v5p chip) is the deviceless compile test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eigen_jax import sharding
from eigen_jax.aot import programs
from eigen_jax.aot.report import compile_program
from eigen_jax.aot.topology import parse_topology
from eigen_jax.models import Transformer, get_config
from eigen_jax.models.attention import cache_mask, grouped_attention, read_cache, write_cache
from eigen_jax.models.decode_attention import block_size, decode_attention, fetched_block
from eigen_jax.sampling import Engine, Request, SamplingParams, steps
from tests.eigen_jax.sampling.conftest import random_prompts, redrawn_model

L, B, S, H, HD = 2, 5, 256, 4, 32
KV_LEN, BLOCK = 128, 32  # four blocks per row; slots >= KV_LEN are never attended


def _xla(q, k, v, ck, cv, layer, rows, positions, kv_len):
    """The XLA path: scatter the new keys (`write_cache`), then masked attention."""
    cache = write_cache(
        {"k": ck, "v": cv}, layer, jnp.arange(B) if rows is None else rows, k, v, positions
    )
    kc, vc = (read_cache(cache[n], layer, rows, kv_len) for n in ("k", "v"))
    out = grouped_attention(q, kc, vc, cache_mask(positions, kv_len), HD**-0.5)
    return out, cache["k"], cache["v"]


def _inputs(kv, dtype, seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 5)
    normal = lambda key, shape: jax.random.normal(key, shape, jnp.float32).astype(dtype)  # noqa: E731
    ck, cv = normal(ks[0], (L, B, kv, S, HD)), normal(ks[1], (L, B, kv, S, HD))
    q = normal(ks[2], (B, 1, H, HD))
    k, v = normal(ks[3], (B, 1, kv, HD)), normal(ks[4], (B, 1, kv, HD))
    return q, k, v, ck, cv


# Lengths 1, one block, mid-block, full kv_len, and a row past kv_len (inactive: no write, and
# zeros where XLA averages: the sampler reads neither).
POSITIONS = np.asarray([[0], [31], [77], [KV_LEN - 1], [S]], np.int32)
LIVE = POSITIONS[:, 0] < KV_LEN


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 2e-6), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize("kv", [4, 2, 1])
def test_kernel_matches_xla_with_row_lengths_and_cache_rows(kv, dtype, tol):
    """Outputs within tolerance; the written caches equal XLA's scatter bit for bit."""
    q, k, v, ck, cv = _inputs(kv, dtype)
    rows = jnp.asarray([3, 0, 4, 1, 2])  # row b reads and writes cache row rows[b]
    for layer in (0, 1):
        args = (q, k, v, ck, cv, layer, rows, POSITIONS, HD**-0.5, KV_LEN)
        got, got_k, got_v = decode_attention(*args, block=BLOCK)
        ref, ref_k, ref_v = _xla(*args[:-2], KV_LEN)
        assert got.shape == ref.shape and got.dtype == dtype
        got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
        np.testing.assert_allclose(got[LIVE], ref[LIVE], atol=tol, rtol=tol)
        assert np.all(got[~LIVE] == 0)
        np.testing.assert_array_equal(np.asarray(got_k), np.asarray(ref_k))
        np.testing.assert_array_equal(np.asarray(got_v), np.asarray(ref_v))


def test_dead_blocks_never_reach_the_softmax():
    """Every slot from the block after a row's last live block holds NaN: any block of them
    that reached the softmax (0 x NaN) would poison the row's output. (The clamped fetch and the
    skipped compute each keep them out; `fetched_block` is checked on its own below.)"""
    q, k, v, ck, cv = _inputs(2, jnp.float32)
    ends = [((min(p, KV_LEN - 1) // BLOCK) + 1) * BLOCK for p in POSITIONS[:, 0]]
    slot = jnp.arange(S)[None, :]
    dead = (slot >= jnp.asarray(ends)[:, None])[None, :, None, :, None]  # rows in order
    poisoned = [jnp.where(dead, jnp.nan, c) for c in (ck, cv)]
    got, _, _ = decode_attention(
        q, k, v, *poisoned, 1, None, POSITIONS, HD**-0.5, KV_LEN, block=BLOCK
    )
    ref = _xla(q, k, v, ck, cv, 1, None, POSITIONS, KV_LEN)[0]
    assert np.all(np.isfinite(np.asarray(got)))
    np.testing.assert_allclose(np.asarray(got)[LIVE], np.asarray(ref)[LIVE], atol=2e-6)


def test_steps_past_the_live_blocks_fetch_the_last_one_again():
    got = [[int(fetched_block(j, length, 32)) for j in range(4)] for length in (0, 1, 32, 33, 128)]
    assert got == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 2, 3]]


def test_block_size_respects_tpu_tiling():
    assert block_size(32768, 32768) == 512
    assert block_size(128, 32768) == 128
    assert block_size(96, 96) == 96  # the whole (capped) cache: any length is one full block
    assert block_size(100, 100) == 100
    assert block_size(40, 128) is None  # not a whole bf16 sublane tile
    assert block_size(768, 1000) is None  # two 512-slot blocks would run past the cache


def _engines(mesh=None):
    """The same tiny model's weights under both decode attentions."""
    base = redrawn_model()
    out = {}
    for impl in ("xla", "pallas"):
        model = Transformer(get_config("tiny-qwen3", decode_attention_impl=impl), rngs=nnx.Rngs(0))
        nnx.update(model, nnx.state(base))
        out[impl] = Engine(model, 4, 128, mesh=mesh, min_kv_len=16, shape_slack=1)
    return out


@pytest.mark.parametrize("mesh_shape", [None, (2, 2, 2)])
def test_engine_decode_with_kernel_equals_xla(mesh_shape):
    """Sampled sessions of different lengths (buckets 16..128) give the same tokens and
    log-probs through the kernel as through XLA, on one device (the CPU engine's per-layer
    planes) and on a mesh (the stacked cache, shard_mapped over batch and KV heads)."""
    mesh = None if mesh_shape is None else sharding.make_mesh(mesh_shape)
    # No top-k: a logit tie at the k-th token (1e-6 apart) would move a log-prob by ~1e-2.
    params = SamplingParams(temperature=0.9, max_new_tokens=24)
    prompts = random_prompts([5, 40, 9, 70], seed=3)
    requests = [Request(i, p, params, 10 + i) for i, p in enumerate(prompts)]
    results = {impl: engine.run(requests) for impl, engine in _engines(mesh).items()}
    for got, ref in zip(results["pallas"], results["xla"]):
        np.testing.assert_array_equal(got.token_ids, ref.token_ids)
        np.testing.assert_allclose(got.logprobs, ref.logprobs, rtol=0, atol=1e-5)


def _stacked_decode(model, mesh, prompts, max_len=128):
    """Prefill (XLA either way) then 12 `decode_steps` on the layer-stacked cache (what an
    accelerator engine runs: the kernel takes the scanned layer index as scalar prefetch)."""
    graphdef, params = nnx.split(model)
    n, width = len(prompts), max(map(len, prompts))
    tokens = np.zeros((n, width), np.int32)
    positions = np.full((n, width), max_len, np.int32)
    for i, p in enumerate(prompts):
        tokens[i, : len(p)], positions[i, : len(p)] = p, np.arange(len(p))
    lens = np.asarray([len(p) for p in prompts], np.int32)
    cache = model.init_cache(n, max_len)
    if mesh is not None:
        params = jax.device_put(params, sharding.state_shardings(params, mesh))
        cache = jax.device_put(
            cache,
            sharding.logical_to_sharding(
                ("layers", "batch", "kv_heads", "length", "head_dim"), mesh, cache["k"].shape
            ),
        )
    ones = np.ones(n, np.float32)
    cache, tok, _ = steps.prefill(
        graphdef,
        params,
        cache,
        np.arange(n, dtype=np.int32),
        tokens,
        positions,
        lens - 1,
        ones.astype(np.uint32),
        ones,
        np.zeros(n, np.int32),
        ones,
    )
    state = steps.SlotState.empty(n, 4)._replace(
        last_token=np.asarray(tok, np.int32),
        position=lens,
        active=np.ones(n, bool),
        num_generated=np.ones(n, np.int32),
        max_new=np.full(n, 50, np.int32),
        temperature=np.full(n, 0.9, np.float32),
        seed=np.arange(n, dtype=np.uint32),
    )
    _, _, out, logprobs = steps.decode_steps(graphdef, params, cache, state, 12, kv_len=64)
    return np.asarray(out), np.asarray(logprobs)


@pytest.mark.parametrize("mesh_shape", [None, (2, 2, 2)])
def test_stacked_cache_decode_with_kernel_equals_xla(mesh_shape):
    mesh = None if mesh_shape is None else sharding.make_mesh(mesh_shape)
    prompts = random_prompts([3, 30, 17, 45], seed=4)
    base, out = redrawn_model(), {}
    for impl in ("xla", "pallas"):
        model = Transformer(get_config("tiny-qwen3", decode_attention_impl=impl), rngs=nnx.Rngs(0))
        nnx.update(model, nnx.state(base))
        if mesh is None:
            out[impl] = _stacked_decode(model, None, prompts)
        else:
            with jax.set_mesh(mesh):
                out[impl] = _stacked_decode(model, mesh, prompts)
    np.testing.assert_array_equal(out["pallas"][0], out["xla"][0])
    assert np.all(out["xla"][0] >= 0)  # every row decoded all 12 steps
    np.testing.assert_allclose(out["pallas"][1], out["xla"][1], rtol=0, atol=1e-5)


def test_decode_lowers_to_mosaic_for_v5p():
    """Qwen3-8B's attention shapes (hd 128, 4 query heads per KV head, bf16 cache) in the
    sampler's scanned decode loop, compiled for a v5p slice: "auto" takes the kernel there and
    Mosaic accepts its blocks; with "xla" no kernel is in the program."""
    mesh = sharding.make_mesh((1, 4, 1), devices=parse_topology("v5p-8").devices())
    texts = {}
    for impl in ("auto", "xla"):
        config = get_config(
            "tiny-qwen3",
            num_heads=8,
            num_kv_heads=2,
            head_dim=128,
            dtype="bfloat16",
            decode_attention_impl=impl,
        )
        program = programs.decode_program("decode", config, mesh, 8, 2048, 4)
        report, compiled = compile_program(program, parse_topology("v5p-8").chip)
        assert report.fits
        texts[impl] = compiled.as_text()
    assert "tpu_custom_call" in texts["auto"] and "decode_attention" in texts["auto"]
    assert "tpu_custom_call" not in texts["xla"]


def test_decode_attention_impl_is_checked():
    with pytest.raises(ValueError, match="decode_attention_impl"):
        get_config("tiny-qwen3", decode_attention_impl="splash")
    model = Transformer(get_config("tiny-qwen3", decode_attention_impl="pallas"), rngs=nnx.Rngs(0))
    cache = model.init_cache(2, 64)
    with pytest.raises(ValueError, match="with cache_rows"):  # rows must own their cache rows
        model(
            jnp.ones((2, 1), jnp.int32),
            positions=jnp.ones((2, 1), jnp.int32),
            cache=cache,
            cache_rows=jnp.asarray([1, 0]),
        )
