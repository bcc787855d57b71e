"""Compile-aware shapes: a call reuses an already compiled larger shape only within the cost
slack, and an engine that reuses shapes samples exactly what the exact-bucket engine samples
while compiling fewer programs."""

import collections

import numpy as np
import pytest

from eigen_jax.models import get_config
from eigen_jax.sampling import Engine, shapes, steps
from tests.eigen_jax.sampling.test_live_kv import SAMPLED, _sessions


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.setattr(
        shapes, "_COMPILED", collections.defaultdict(lambda: collections.defaultdict(set))
    )


def test_token_cost_is_weight_flops_over_slot_flops():
    cfg = get_config("tiny-qwen3")
    d, hd, h, kv, f = (
        cfg.hidden_size,
        cfg.head_dim,
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.intermediate_size,
    )
    weight_flops = 2 * (d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f)  # q,o + k,v + MLP
    slot_flops = 2 * 2 * h * hd  # q.k and p.v per slot
    assert shapes.token_cost_of(cfg) == pytest.approx(weight_flops / slot_flops)


def test_prefill_reuses_within_slack_only():
    p = shapes.ShapePlanner("sig", token_cost=100.0, slack=4.0)
    assert p.prefill(8, 128, 256, max_length=512) == (8, 128, 256)  # nothing compiled yet
    # cost(4, 64, 256) = 4*64*356; (8, 128, 256) costs 4x that: reused.
    assert p.prefill(4, 64, 256, max_length=512) == (8, 128, 256)
    # (2, 64, 128) costs 2*64*228; the compiled one ~12.5x: too dear, compiled exactly.
    assert p.prefill(2, 64, 128, max_length=512) == (2, 64, 128)
    assert p.prefill(1, 64, 128, max_length=512) == (2, 64, 128)  # the cheapest that covers it
    assert p.prefill(4, 64, 256, max_length=64) == (4, 64, 256)  # 128 > max_length: not a fit
    assert p.prefill(16, 16, 128, max_length=512) == (16, 16, 128)  # fewer rows never cover
    other = shapes.ShapePlanner("other-sig", token_cost=100.0, slack=4.0)
    assert other.prefill(4, 64, 256, max_length=512) == (4, 64, 256)  # per program signature
    exact = shapes.ShapePlanner("sig", token_cost=100.0, slack=1.0)
    assert exact.prefill(1, 64, 128, max_length=512) == (1, 64, 128)


def test_decode_reuses_a_longer_kv_within_slack():
    p = shapes.ShapePlanner("sig", token_cost=100.0, slack=2.0)
    assert p.decode(256, num_slots=8, num_steps=4) == 256
    assert p.decode(128, num_slots=8, num_steps=4) == 256  # 356 <= 2 * 228
    assert p.decode(32, num_slots=8, num_steps=4) == 32  # 356 > 2 * 132
    assert p.decode(32, num_slots=8, num_steps=8) == 32  # other step count: other program
    assert p.decode(512, num_slots=8, num_steps=4) == 512  # never shorter than needed
    with pytest.raises(ValueError, match="slack must be >= 1"):
        shapes.ShapePlanner("sig", 1.0, slack=0.5)


def test_engine_with_reuse_samples_the_same_with_fewer_programs(tiny_model, monkeypatch):
    calls = collections.defaultdict(set)
    prefill, decode = steps.prefill, steps.decode_steps

    def spy_prefill(graphdef, params, cache, rows, tokens, *args, kv_len=None, **kw):
        calls[tag].add(("prefill", tokens.shape, kv_len))
        return prefill(graphdef, params, cache, rows, tokens, *args, kv_len=kv_len, **kw)

    def spy_decode(*args, kv_len=None, **kw):
        calls[tag].add(("decode", kv_len))
        return decode(*args, kv_len=kv_len, **kw)

    monkeypatch.setattr(steps, "prefill", spy_prefill)
    monkeypatch.setattr(steps, "decode_steps", spy_decode)
    out = {}
    for tag, slack in (("reuse", 8.0), ("exact", 1.0)):
        engine = Engine(
            tiny_model,
            2,
            128,
            max_prefill_len=32,
            min_kv_len=16,
            min_prefill_len=4,
            shape_slack=slack,
        )
        out[tag] = _sessions(engine, SAMPLED)
    assert len(calls["reuse"]) < len(calls["exact"]), calls
    assert len(out["reuse"]) == len(out["exact"]) == 9
    for got, ref in zip(out["reuse"], out["exact"]):
        assert got[:3] == ref[:3] and got[4:] == ref[4:]
        np.testing.assert_allclose(got[3], ref[3], rtol=0, atol=1e-5)
