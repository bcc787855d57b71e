"""Static batched generation against cache-free recomputation and teacher-forced scoring."""

import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from eigen_jax.sampling import Engine, Request, SamplingParams, generate
from eigen_jax.sharding import make_mesh
from tests.eigen_jax.sampling.conftest import (
    numpy_sampling_logprobs,
    random_prompts,
    redrawn_model,
    reference_greedy,
    reference_logits,
)

LENGTHS = [5, 21, 9, 14]  # mixed prompt lengths: right-padded prefill, per-row positions
NEW = 12
MIXED = [
    SamplingParams(temperature=0),
    SamplingParams(temperature=0.7, top_k=20),
    SamplingParams(temperature=1.0, top_p=0.9),
    SamplingParams(temperature=1.2, top_k=30, top_p=0.8),
]


def _check_against_teacher_forcing(model, prompts, outs, params):
    seqs = [p + o.token_ids.tolist() for p, o in zip(prompts, outs)]
    for prompt, out, logits, q in zip(prompts, outs, reference_logits(model, seqs), params):
        assert out.finish_reason == "length" and out.num_tokens == NEW
        for j, token in enumerate(out.token_ids):
            dist = numpy_sampling_logprobs(
                logits[len(prompt) - 1 + j], q.temperature, q.top_k, q.top_p
            )
            assert np.isfinite(dist[token]), "sampled a token outside the filtered support"
            assert abs(dist[token] - out.logprobs[j]) <= 1e-4, (q, j)


@pytest.fixture(params=["tiny-qwen3", "tiny-qwen3-moe"])
def dense_and_moe_model(request, tiny_model):
    return tiny_model if request.param == "tiny-qwen3" else redrawn_model(request.param)


def test_cached_greedy_equals_recomputation(dense_and_moe_model):
    tiny_model = dense_and_moe_model
    prompts = random_prompts(LENGTHS, seed=1)
    outs = generate(tiny_model, prompts, SamplingParams(temperature=0), max_new_tokens=NEW)
    expected = reference_greedy(tiny_model, prompts, NEW)
    for out, exp in zip(outs, expected):
        assert out.token_ids.tolist() == exp
    _check_against_teacher_forcing(tiny_model, prompts, outs, [MIXED[0]] * 4)


@pytest.mark.parametrize("mesh_shape", [None, (2, 2, 2)])
def test_mixed_params_logprobs_equal_teacher_forced(tiny_model, mesh_shape):
    """Greedy, top-k, top-p and combined rows in one batch; on a data x fsdp x tensor mesh too
    (batch on 4 devices, the 2 kv heads on the tensor axis)."""
    prompts = random_prompts(LENGTHS, seed=2)
    seeds = [11, 12, 13, 14]
    plain = generate(tiny_model, prompts, MIXED, max_new_tokens=NEW, seeds=seeds)
    if mesh_shape is None:
        _check_against_teacher_forcing(tiny_model, prompts, plain, MIXED)
        return
    mesh = make_mesh(mesh_shape)
    engine = Engine(tiny_model, num_slots=4, max_len=64, mesh=mesh)
    outs = engine.run(
        [
            Request(i, p, q.replace(max_new_tokens=NEW), s)
            for i, (p, q, s) in enumerate(zip(prompts, MIXED, seeds))
        ]
    )
    _check_against_teacher_forcing(tiny_model, prompts, outs, MIXED)
    expected = NamedSharding(mesh, P(None, ("data", "fsdp"), "tensor", None, None))
    for part in engine.cache.values():  # still laid out like the model after donated updates
        assert part.sharding.is_equivalent_to(expected, 5), part.sharding
    for a, b in zip(outs, plain):  # the same seeds without a mesh give the same tokens
        np.testing.assert_array_equal(a.token_ids, b.token_ids)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_sample_does_not_depend_on_batch_composition(tiny_model):
    prompts = random_prompts([7, 16, 3], seed=3)
    params = SamplingParams(temperature=1.0, top_k=40)
    batch = generate(tiny_model, prompts, params, max_new_tokens=NEW, seeds=[1, 7, 3])
    alone = generate(tiny_model, [prompts[1]], params, max_new_tokens=NEW, seeds=[7])[0]
    np.testing.assert_array_equal(alone.token_ids, batch[1].token_ids)
    np.testing.assert_allclose(alone.logprobs, batch[1].logprobs, atol=1e-5)
    other_seed = generate(tiny_model, [prompts[1]], params, max_new_tokens=NEW, seeds=[8])[0]
    assert not np.array_equal(other_seed.token_ids, alone.token_ids)


def test_stop_token_ends_the_row_and_is_kept(tiny_model):
    prompts = random_prompts(LENGTHS, seed=1)
    greedy = generate(tiny_model, prompts, SamplingParams(temperature=0), max_new_tokens=NEW)
    stop_id = int(greedy[1].token_ids[4])
    first = greedy[1].token_ids.tolist().index(stop_id)
    outs = generate(
        tiny_model,
        prompts,
        SamplingParams(temperature=0, stop_token_ids=[stop_id]),
        max_new_tokens=NEW,
    )
    assert outs[1].finish_reason == "stop" and outs[1].stop == stop_id
    assert outs[1].token_ids.tolist() == greedy[1].token_ids[: first + 1].tolist()
    for other, ref in zip(outs, greedy):  # the other rows are unaffected unless they hit it too
        ids = ref.token_ids.tolist()
        cut = ids.index(stop_id) + 1 if stop_id in ids else NEW
        assert other.token_ids.tolist() == ids[:cut]
        assert other.finish_reason == ("stop" if stop_id in ids else "length")


def test_bad_arguments_are_rejected(tiny_model):
    with pytest.raises(ValueError, match="at least one prompt"):
        generate(tiny_model, [])
    with pytest.raises(ValueError, match="2 SamplingParams for 1 prompts"):
        generate(tiny_model, [[3, 4]], [SamplingParams()] * 2)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 256\)"):
        generate(tiny_model, [[3, 999]], max_new_tokens=2)
    with pytest.raises(ValueError, match="decode_fn"):
        generate(tiny_model, [[3, 4]], SamplingParams(stop_strings=["x"]), max_new_tokens=2)


def test_one_device_loop_equals_frequent_host_syncs(tiny_model):
    """The default (whole budget in one device loop for a static batch without stop strings)
    samples exactly what syncing with the host every 3 steps samples: tokens, log-probs, finish
    reasons, with a stop id ending some rows early on device."""
    prompts = random_prompts(LENGTHS, seed=4)
    probe = generate(tiny_model, prompts, MIXED, max_new_tokens=NEW, seeds=7)
    stop_id = int(probe[2].token_ids[5])
    params = [q.replace(stop_token_ids=(stop_id,)) for q in MIXED]
    synced = generate(tiny_model, prompts, params, max_new_tokens=NEW, seeds=7, steps_per_sync=3)
    looped = generate(tiny_model, prompts, params, max_new_tokens=NEW, seeds=7)
    assert synced[2].finish_reason == "stop"
    for a, b in zip(synced, looped):
        np.testing.assert_array_equal(a.token_ids, b.token_ids)
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-6)
        assert (a.finish_reason, a.stop) == (b.finish_reason, b.stop)
