"""Live-length attention: prefill and decode run on the first `kv_len` cache slots only, and the
samples (ids and log-probabilities) equal those of the same engine attending its whole cache.
The live engines take exact buckets (`shape_slack=1`), so reuse of the full-cache engine's
compiled shapes cannot hide the buckets under test (reuse is tested in test_shapes.py)."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from eigen_jax.sampling import Engine, Request, SamplingParams, steps
from eigen_jax.sharding import make_mesh
from tests.eigen_jax.sampling.conftest import random_prompts

MAX_LEN = 128
SAMPLED = SamplingParams(temperature=0.9, top_k=50, max_new_tokens=14)
GREEDY = SamplingParams(temperature=0, max_new_tokens=14)


@pytest.fixture
def kv_lens(monkeypatch):
    """Records the kv_len of every prefill and decode call, so a test can check that it ran on
    several bucket sizes (and did not pass by always attending the whole cache)."""
    seen = {"prefill": [], "decode": []}
    prefill, decode = steps.prefill, steps.decode_steps

    def spy_prefill(*args, kv_len=None, **kw):
        seen["prefill"].append(kv_len)
        return prefill(*args, kv_len=kv_len, **kw)

    def spy_decode(*args, kv_len=None, **kw):
        seen["decode"].append(kv_len)
        return decode(*args, kv_len=kv_len, **kw)

    monkeypatch.setattr(steps, "prefill", spy_prefill)
    monkeypatch.setattr(steps, "decode_steps", spy_decode)
    return seen


def _sessions(engine, params):
    """Three multi-turn sessions (2 slots: the third waits) whose contexts grow from 6-20 tokens
    across the 16/32/64/128 buckets; the last suffix is prefilled in two chunks."""
    prompts = random_prompts([6, 13, 20], seed=21)
    suffixes = [random_prompts([5, 9, 3], seed=22), random_prompts([40, 4, 11], seed=23)]
    for sid, p in enumerate(prompts):
        engine.submit(sid, p, params, seed=50 + sid)
    turns, out = {sid: 0 for sid in range(3)}, []
    while engine.has_work():
        for c in engine.step():
            sid = c.session_id
            out.append(
                (
                    sid,
                    turns[sid],
                    c.token_ids.tolist(),
                    c.logprobs,
                    c.finish_reason,
                    c.context_length,
                )
            )
            if turns[sid] < len(suffixes):
                engine.submit(sid, suffixes[turns[sid]][sid], params, seed=50 + sid)
                turns[sid] += 1
            else:
                engine.release(sid)
    return sorted(out, key=lambda x: x[:2])


@pytest.mark.parametrize("params", [SAMPLED, GREEDY], ids=["sampled", "greedy"])
def test_multi_turn_live_length_equals_full_cache(tiny_model, kv_lens, params):
    full = _sessions(Engine(tiny_model, 2, MAX_LEN, max_prefill_len=32, min_kv_len=MAX_LEN), params)
    assert set(kv_lens["decode"]) == {MAX_LEN} and set(kv_lens["prefill"]) == {MAX_LEN}
    kv_lens["decode"].clear(), kv_lens["prefill"].clear()
    live = _sessions(
        Engine(tiny_model, 2, MAX_LEN, max_prefill_len=32, min_kv_len=16, shape_slack=1), params
    )
    assert {32, 64, MAX_LEN} <= set(kv_lens["decode"]), kv_lens["decode"]
    assert len(set(kv_lens["prefill"]) - {MAX_LEN}) >= 2, kv_lens["prefill"]
    assert len(live) == len(full) == 9
    assert max(x[5] + len(x[2]) for x in live) > 64  # some context crossed into the last bucket
    for got, ref in zip(live, full):
        assert got[:3] == ref[:3] and got[4:] == ref[4:]
        np.testing.assert_allclose(got[3], ref[3], rtol=0, atol=1e-5)


def test_row_near_max_len_finishes_with_length(tiny_model, kv_lens):
    """A long row runs out of room at the real max_len (not at a kv bucket) while a short row in
    the same batch keeps decoding; both equal the full-cache engine."""
    max_len = 96  # not a power of two: the top bucket is capped at max_len
    long, short = random_prompts([max_len - 7, 10], seed=31)
    params = SAMPLED.replace(max_new_tokens=50)

    def run(min_kv_len):
        engine = Engine(
            tiny_model, 2, max_len, max_prefill_len=max_len, min_kv_len=min_kv_len, shape_slack=1
        )
        return engine.run([Request("long", long, params, 1), Request("short", short, params, 2)])

    ref, got = run(max_len), run(16)
    assert {32, 64, max_len} <= set(kv_lens["decode"]), kv_lens["decode"]
    assert got[0].finish_reason == "length" and got[0].num_tokens == 7
    assert got[1].finish_reason == "length" and got[1].num_tokens == 50
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g.token_ids, r.token_ids)
        np.testing.assert_allclose(g.logprobs, r.logprobs, rtol=0, atol=1e-5)


def test_live_length_on_a_mesh_keeps_samples_and_cache_layout(tiny_model, kv_lens):
    """Sliced and written-back caches keep the model's layout (batch on data x fsdp, kv heads on
    tensor) and the samples of the unsharded full-cache engine."""
    prompts = random_prompts([5, 21, 9, 14], seed=33)
    requests = [Request(i, p, SAMPLED, 60 + i) for i, p in enumerate(prompts)]
    ref = Engine(tiny_model, 4, MAX_LEN, min_kv_len=MAX_LEN).run(requests)
    mesh = make_mesh((2, 2, 2))
    engine = Engine(tiny_model, 4, MAX_LEN, mesh=mesh, min_kv_len=16, shape_slack=1)
    got = engine.run(requests)
    assert 32 in kv_lens["prefill"] and 32 in kv_lens["decode"]
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g.token_ids, r.token_ids)
        np.testing.assert_allclose(g.logprobs, r.logprobs, rtol=0, atol=1e-5)
    expected = NamedSharding(mesh, P(None, ("data", "fsdp"), "tensor", None, None))
    for part in engine.cache.values():
        assert part.sharding.is_equivalent_to(expected, 5), part.sharding


def test_decode_stops_at_a_too_small_kv_len_without_losing_tokens(tiny_model):
    """decode_steps with kv_len below what the call needs returns early (the row stays active,
    not finished as "length" at the bucket edge); continuing on the full cache gives the tokens
    of one full-cache call."""
    graphdef, params = nnx.split(tiny_model)
    prompt = random_prompts([30], seed=41)[0]

    def prefilled():
        cache = tiny_model.init_cache(1, 64)
        pos = np.arange(len(prompt), dtype=np.int32)[None]
        cache, tok, _ = steps.prefill(
            graphdef,
            params,
            cache,
            np.zeros(1, np.int32),
            np.asarray([prompt], np.int32),
            pos,
            np.asarray([len(prompt) - 1], np.int32),
            np.ones(1, np.uint32),
            np.ones(1, np.float32),
            np.zeros(1, np.int32),
            np.ones(1, np.float32),
        )
        state = steps.SlotState.empty(1, 4)._replace(
            last_token=np.asarray(tok, np.int32),
            position=np.asarray([len(prompt)], np.int32),
            active=np.ones(1, bool),
            num_generated=np.ones(1, np.int32),
            max_new=np.full(1, 20, np.int32),
            temperature=np.ones(1, np.float32),
            seed=np.ones(1, np.uint32),
        )
        return cache, state

    cache, state = prefilled()
    _, _, ref_tokens, ref_lps = steps.decode_steps(graphdef, params, cache, state, 16)
    cache, state = prefilled()
    cache, state, first, first_lps = steps.decode_steps(
        graphdef, params, cache, state, 16, kv_len=32
    )
    state, first, first_lps = jax.device_get((state, first, first_lps))
    assert (first[0] >= 0).sum() == 2  # slots 30 and 31, then slot 32 would fall outside
    assert state.active[0] and state.position[0] == 32 and state.finish[0] == steps.FINISH_NONE
    _, _, rest, rest_lps = steps.decode_steps(graphdef, params, cache, state, 14)
    np.testing.assert_array_equal(np.concatenate([first[0, :2], rest[0]]), ref_tokens[0])
    np.testing.assert_allclose(
        np.concatenate([first_lps[0, :2], rest_lps[0]]), ref_lps[0], atol=1e-5
    )


def test_kv_len_bounds_cover_every_write():
    position = np.asarray([10, 60, 3], np.int32)
    active = np.asarray([True, False, True])
    num_generated = np.asarray([1, 1, 5], np.int32)
    max_new = np.asarray([100, 100, 6], np.int32)
    # row 0 writes slots 10..17 (8 steps); row 1 is inactive; row 2 has one token left.
    assert steps.decode_kv_len(position, active, num_generated, max_new, 8, 1024, 16) == 32
    assert steps.decode_kv_len(position, active, num_generated, max_new, 6, 1024, 16) == 16
    assert steps.decode_kv_len(position, active, num_generated, max_new, 8, 24, 16) == 24
    idle = np.zeros(3, bool)
    assert steps.decode_kv_len(position, idle, num_generated, max_new, 8, 64, 16) == 64
    positions = np.asarray([[0, 1, 2, 64], [40, 41, 64, 64]], np.int32)  # 64 = padding
    assert steps.prefill_kv_len(positions, 64, 16) == 64
    assert steps.prefill_kv_len(positions[:, :2], 128, 16) == 64
    assert steps.prefill_kv_len(np.minimum(positions, 31), 128, 16) == 32


@pytest.mark.parametrize("kv_len", [None, 32])
def test_per_layer_weights_decode_like_the_stacks(tiny_model, kv_len):
    """The CPU engine's decode over per-layer weights and cache planes (`layer_params`) gives
    the stacked path's tokens, log-probs and cache."""
    graphdef, params = nnx.split(tiny_model)
    rng = np.random.RandomState(5)
    cache = jax.tree.map(
        lambda x: rng.normal(size=x.shape).astype(x.dtype), tiny_model.init_cache(3, 64)
    )
    state = steps.SlotState.empty(3, 4)._replace(
        last_token=rng.randint(3, 200, 3).astype(np.int32),
        position=np.asarray([5, 17, 9], np.int32),
        active=np.asarray([True, True, False]),
        max_new=np.full(3, 20, np.int32),
        temperature=np.ones(3, np.float32),
        seed=np.arange(3, dtype=np.uint32),
    )
    outs = []
    for layer_params in (None, steps.split_layer_params(graphdef, params)):
        outs.append(
            jax.device_get(
                steps.decode_steps(
                    graphdef,
                    params,
                    jax.tree.map(np.copy, cache),
                    state,
                    6,
                    kv_len=kv_len,
                    layer_params=layer_params,
                )
            )
        )
    (c0, s0, t0, l0), (c1, s1, t1, l1) = outs
    np.testing.assert_array_equal(t0, t1)
    np.testing.assert_allclose(l0, l1, atol=1e-6)
    for name in ("k", "v"):
        np.testing.assert_allclose(c0[name], c1[name], atol=1e-6)
    assert (t0[2] == -1).all() and (t0[:2] >= 0).all()
