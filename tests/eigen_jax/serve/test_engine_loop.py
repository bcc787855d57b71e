"""EngineLoop: concurrent requests decode in one batch and equal `generate`; bad requests,
cancellation and engine failures reach the caller instead of hanging it."""

import concurrent.futures
import time

import numpy as np
import pytest

from eigen_jax.sampling import Engine, SamplingParams, generate
from eigen_jax.serve import EngineFailure, EngineLoop, RequestError
from eigen_jax.serve.engine_loop import MAX_CONSECUTIVE_STEP_FAILURES

PROMPTS = [[5, 17, 42, 99, 7], [300, 12, 8], [64, 65, 66, 67, 68, 69, 70], [9, 9, 9, 1]]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=10)


@pytest.fixture(scope="module")
def engine(reference_model):
    return Engine(reference_model, num_slots=4, max_len=64, steps_per_sync=4)


def test_requests_submitted_together_decode_together(engine, reference_model):
    ref = generate(reference_model, PROMPTS, GREEDY)
    loop = EngineLoop(engine)
    futures = [loop.submit(p, GREEDY) for p in PROMPTS]  # queued before start: one batch
    with loop:
        results = [f.result(timeout=120) for f in futures]
        assert loop.peak_running == len(PROMPTS)
        # Requests from many threads at once, more than there are slots.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            threaded = list(pool.map(lambda p: loop.generate(p, GREEDY, timeout=120), PROMPTS * 2))
    for got, want in zip(results, ref):
        assert got.token_ids.tolist() == want.token_ids.tolist()
        np.testing.assert_allclose(got.logprobs, want.logprobs, atol=2e-4)
    assert [c.token_ids.tolist() for c in threaded] == [c.token_ids.tolist() for c in ref * 2]
    assert engine.num_free_slots == engine.num_slots  # every finished session was released
    assert loop.requests_done == 2 * len(PROMPTS) + len(PROMPTS)


def test_bad_request_fails_only_its_future(engine):
    with EngineLoop(engine) as loop:
        bad = loop.submit([1] * 64, GREEDY)  # no room left in max_len=64
        good = loop.submit(PROMPTS[0], GREEDY)
        with pytest.raises(RequestError, match="leaves no room"):
            bad.result(timeout=120)
        assert good.result(timeout=120).num_tokens == 10
    with pytest.raises(EngineFailure, match="shutting down"):
        loop.submit(PROMPTS[0], GREEDY)


def test_cancelled_request_frees_its_slot(engine):
    long = SamplingParams(temperature=0.0, max_new_tokens=60)
    with EngineLoop(engine) as loop:
        future = loop.submit(PROMPTS[1], long)
        _wait_for(lambda: engine.num_free_slots < engine.num_slots)  # it is decoding
        future.cancel()
        _wait_for(lambda: engine.num_free_slots == engine.num_slots)
        assert loop.requests_done == 0
        others = [loop.submit(p, GREEDY) for p in PROMPTS]
        assert all(f.result(timeout=120).num_tokens == 10 for f in others)
    assert not engine.has_work()


def test_engine_step_exception_fails_only_touched_requests_and_loop_keeps_serving(
    reference_model, monkeypatch
):
    engine = Engine(reference_model, num_slots=4, max_len=64, steps_per_sync=4)
    real_step, calls = engine.step, []

    def step_failing_once():
        calls.append(1)
        if len(calls) == 1:
            raise OverflowError("Python int too large to convert to C int")
        return real_step()

    monkeypatch.setattr(engine, "step", step_failing_once)
    loop = EngineLoop(engine)
    touched = loop.submit(PROMPTS[0], GREEDY)
    with loop:
        with pytest.raises(EngineFailure, match="step failed: OverflowError"):
            touched.result(timeout=60)
        assert loop.healthy
        later = loop.generate(PROMPTS[1], GREEDY, timeout=120)  # the loop still serves
        want = generate(reference_model, [PROMPTS[1]], GREEDY)[0]
        assert later.token_ids.tolist() == want.token_ids.tolist()
        assert loop.requests_failed == 1 and engine.num_free_slots == engine.num_slots


def test_engine_that_keeps_failing_marks_the_loop_down(reference_model, monkeypatch):
    engine = Engine(reference_model, num_slots=4, max_len=64, steps_per_sync=4)

    def broken_step():
        raise RuntimeError("device lost")

    monkeypatch.setattr(engine, "step", broken_step)
    loop = EngineLoop(engine)
    with loop:
        for _ in range(MAX_CONSECUTIVE_STEP_FAILURES):
            with pytest.raises(EngineFailure, match="device lost"):
                loop.submit(PROMPTS[0], GREEDY).result(timeout=60)
        _wait_for(lambda: not loop.healthy)
        with pytest.raises(EngineFailure, match="device lost"):
            loop.submit(PROMPTS[0], GREEDY)


def test_admission_exception_fails_only_its_request(engine, monkeypatch):
    real_submit = engine.submit

    def submit(session_id, ids, params, seed):
        if ids == [1, 2, 3]:
            raise OverflowError("int32 overflow")
        return real_submit(session_id, ids, params, seed)

    monkeypatch.setattr(engine, "submit", submit)
    with EngineLoop(engine) as loop:
        with pytest.raises(RequestError, match="int32 overflow"):
            loop.generate([1, 2, 3], GREEDY, timeout=60)
        assert loop.generate(PROMPTS[2], GREEDY, timeout=120).num_tokens == 10
        assert loop.healthy


def _wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
