"""Continuous batching: multi-turn sessions reuse their cached prefix and match fresh
full-context generation; slots are reused after release; stop strings end turns."""

import numpy as np
import pytest

from eigen_jax.sampling import Engine, Request, SamplingParams
from tests.eigen_jax.sampling.conftest import random_prompts

MAX_LEN = 64
# 10 new tokens with the default 8 decode steps per host sync: turns span two device calls.
GREEDY = SamplingParams(temperature=0, max_new_tokens=10)
SAMPLED = SamplingParams(temperature=0.9, top_k=50, max_new_tokens=10)


def _decode_fn(ids):
    return "".join(chr(ord("a") + int(i) % 26) for i in ids)


def _drain(engine, expected):
    out = {}
    while len(out) < expected:
        for c in engine.step():
            assert c.session_id not in out
            out[c.session_id] = c
    return out


def _fresh(model, context, params, seed):
    """The same request as one prompt in a new engine: a full prefill of the whole context."""
    return Engine(model, num_slots=2, max_len=MAX_LEN).run([Request(0, context, params, seed)])[0]


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_multi_turn_sessions_match_fresh_full_context(tiny_model, params):
    engine = Engine(tiny_model, num_slots=2, max_len=MAX_LEN)
    prompts = random_prompts([9, 4, 6], seed=5)
    suffixes = [random_prompts([3, 7, 1], seed=6 + turn) for turn in range(2)]
    contexts = {sid: list(p) for sid, p in enumerate(prompts)}
    for sid in (0, 1, 2):
        engine.submit(sid, prompts[sid], params, seed=100 + sid)
    for turn in range(3):
        done = _drain(engine, 2)
        assert set(done) == {0, 1}, "session 2 must wait: both slots are held by sessions 0, 1"
        for sid, c in done.items():
            ref = _fresh(tiny_model, contexts[sid], params, 100 + sid)
            np.testing.assert_array_equal(c.token_ids, ref.token_ids)
            np.testing.assert_allclose(c.logprobs, ref.logprobs, atol=1e-4)
            assert c.context_length == len(contexts[sid])
            contexts[sid] += c.token_ids.tolist()
            assert engine.context_length(sid) == len(contexts[sid])
            if turn < 2:  # a tool result / user turn is appended; only it gets prefilled
                contexts[sid] += suffixes[turn][sid]
                engine.submit(sid, suffixes[turn][sid], params, seed=100 + sid)
    assert engine.num_free_slots == 0 and engine.has_work()  # session 2 still queued
    engine.release(0)
    (c,) = _drain(engine, 1).values()
    assert c.session_id == 2
    ref = _fresh(tiny_model, prompts[2], params, 102)
    np.testing.assert_array_equal(c.token_ids, ref.token_ids)
    engine.release(1)
    engine.release(2)
    assert engine.num_free_slots == 2 and not engine.has_work()


def test_long_prompt_prefilled_in_chunks_matches(tiny_model):
    prompt = random_prompts([40], seed=8)[0]
    engine = Engine(tiny_model, num_slots=2, max_len=MAX_LEN, max_prefill_len=16)
    (c,) = engine.run([Request("a", prompt, GREEDY)])
    ref = _fresh(tiny_model, prompt, GREEDY, 0)
    np.testing.assert_array_equal(c.token_ids, ref.token_ids)
    np.testing.assert_allclose(c.logprobs, ref.logprobs, atol=1e-4)


def test_stop_string_truncates_and_next_turn_continues_from_the_cut(tiny_model):
    prompt, suffix = random_prompts([8, 5], seed=9)
    long = GREEDY
    full = _fresh(tiny_model, prompt, long, 0).token_ids.tolist()
    stop = _decode_fn(full[4:6])
    text = _decode_fn(full)
    keep = next(n for n in range(1, 11) if stop in _decode_fn(full[:n]))
    assert keep <= 6 and text.find(stop) >= 0
    engine = Engine(tiny_model, num_slots=2, max_len=MAX_LEN, decode_fn=_decode_fn)
    engine.submit("s", prompt, long.replace(stop_strings=[stop, "zzzzzz"]))
    (c,) = _drain(engine, 1).values()
    assert c.finish_reason == "stop" and c.stop == stop
    assert c.token_ids.tolist() == full[:keep]
    # Tokens decoded after the cut were written to the cache; they must not leak into turn 2.
    engine.submit("s", suffix, long)
    (c2,) = _drain(engine, 1).values()
    ref = _fresh(tiny_model, prompt + full[:keep] + suffix, long, 0)
    np.testing.assert_array_equal(c2.token_ids, ref.token_ids)
    np.testing.assert_allclose(c2.logprobs, ref.logprobs, atol=1e-4)


def test_length_limit_of_the_cache_ends_the_turn(tiny_model):
    engine = Engine(tiny_model, num_slots=2, max_len=MAX_LEN)
    prompt = random_prompts([MAX_LEN - 7])[0]
    (c,) = engine.run([Request(0, prompt, GREEDY.replace(max_new_tokens=50))])
    assert c.finish_reason == "length" and c.num_tokens == 7


def test_misuse_is_reported(tiny_model):
    engine = Engine(tiny_model, num_slots=2, max_len=MAX_LEN)  # shapes compiled elsewhere
    with pytest.raises(ValueError, match="non-empty prompt"):
        engine.submit("a", [])
    with pytest.raises(ValueError, match="no room"):
        engine.submit("a", list(range(3, 3 + MAX_LEN)))
    with pytest.raises(ValueError, match="decode_fn"):
        engine.submit("a", [3], SamplingParams(stop_strings=["x"]))
    engine.submit("a", [3, 4], GREEDY)
    with pytest.raises(ValueError, match="already has a turn queued"):
        engine.submit("a", [5])
    with pytest.raises(KeyError, match="unknown session"):
        engine.release("b")
    engine.release("a")  # cancels the queued turn and frees the slot
    assert engine.num_free_slots == 2 and not engine.has_work()
    with pytest.raises(ValueError, match="distinct session ids"):
        engine.run([Request("x", [3]), Request("x", [4])])
    engine.submit("held", [3, 4], GREEDY)
    engine.submit("held too", [5, 6], GREEDY)
    engine.step()  # admitted: each slot belongs to its session until that is released
    with pytest.raises(ValueError, match="no queued or running turn"):
        engine.run([Request("late", [5], GREEDY)])
    _drain(engine, 2)
    with pytest.raises(RuntimeError, match="held by idle sessions"):
        engine.run([Request("late", [5], GREEDY)])
    with pytest.raises(ValueError, match="positive integer"):
        Engine(tiny_model, num_slots=0, max_len=32)


def test_run_serves_more_requests_than_slots(tiny_model):
    """Engine.run frees each slot as its request finishes, so 5 requests fit 2 slots; each
    result equals the request run alone."""
    prompts = random_prompts([5, 8, 3, 6, 4], seed=11)
    engine = Engine(tiny_model, num_slots=2, max_len=MAX_LEN)
    got = engine.run([Request(i, p, GREEDY, i) for i, p in enumerate(prompts)])
    assert engine.num_free_slots == 2
    for i, p in enumerate(prompts):
        alone = _fresh(tiny_model, p, GREEDY, i)
        np.testing.assert_array_equal(got[i].token_ids, alone.token_ids)


def test_group_with_one_prompt_is_prefilled_once_and_matches_alone(tiny_model, monkeypatch):
    """Four sessions opening with the same prompt (a GRPO group) beside others: the prompt is
    prefilled in one row and copied, yet each sample equals its request run alone (own seed),
    including a prompt longer than one prefill chunk and follow-up turns."""
    from eigen_jax.sampling import steps

    calls = []
    original = steps.prefill

    def spy(graphdef, params, cache, rows, tokens, positions, *args, **kwargs):
        real = np.asarray(positions) < MAX_LEN
        calls.append((int(real.any(axis=1).sum()), int(real.sum())))
        return original(graphdef, params, cache, rows, tokens, positions, *args, **kwargs)

    monkeypatch.setattr(steps, "prefill", spy)
    group, other, long_ = random_prompts([9, 6, 40], seed=21)
    engine = Engine(tiny_model, num_slots=4, max_len=MAX_LEN, max_prefill_len=16)
    requests = [Request(("g", k), group, SAMPLED, 100 + k) for k in range(4)]
    got = engine.run(requests)
    assert calls == [(1, 8)]  # one row: the prompt less its last id (decoded by each copy)
    assert len({tuple(c.token_ids) for c in got}) > 1  # the copies draw different samples
    calls.clear()
    mixed = [Request(("l", k), long_, SAMPLED, 7 + k) for k in range(3)] + [
        Request("o", other, SAMPLED, 5)
    ]
    got += engine.run(mixed)
    # 39 ids of the long prompt in chunks of 16; the 6-token prompt rides along in the first
    assert calls == [(2, 22), (1, 16), (1, 7)]
    monkeypatch.setattr(steps, "prefill", original)
    for r, c in zip(requests + mixed, got):
        alone = _fresh(tiny_model, r.token_ids, r.params, r.seed)
        assert c.context_length == alone.context_length == len(r.token_ids)
        np.testing.assert_array_equal(c.token_ids, alone.token_ids)
        np.testing.assert_allclose(c.logprobs, alone.logprobs, atol=1e-5)
    # a shared-prompt session continues its own history in the next turn
    engine.submit("a", group, GREEDY, 1)
    engine.submit("b", group, GREEDY, 2)
    first = _drain(engine, 2)
    engine.submit("a", [3, 4], GREEDY, 1)
    second = _drain(engine, 1)["a"]
    alone = _fresh(tiny_model, list(group) + list(first["a"].token_ids) + [3, 4], GREEDY, 1)
    np.testing.assert_array_equal(second.token_ids, alone.token_ids)


def test_group_on_a_mesh_keeps_samples_and_cache_sharding(tiny_model):
    """The copy of a shared prompt's cache row keeps the cache laid out on the mesh."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from eigen_jax.sharding import make_mesh

    prompt = random_prompts([9], seed=3)[0]
    requests = [Request(k, prompt, SAMPLED, 50 + k) for k in range(4)]
    ref = Engine(tiny_model, num_slots=4, max_len=MAX_LEN).run(requests)
    mesh = make_mesh((2, 2, 2))
    engine = Engine(tiny_model, num_slots=4, max_len=MAX_LEN, mesh=mesh)
    got = engine.run(requests)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g.token_ids, r.token_ids)
    expected = NamedSharding(mesh, P(None, ("data", "fsdp"), "tensor", None, None))
    for part in engine.cache.values():
        assert part.sharding.is_equivalent_to(expected, 5), part.sharding
