"""`generate`: decode a static batch of prompts to completion (evaluation, tests, baselines).

It is the continuous-batching engine with one slot per prompt and nothing admitted later, so a
static batch and an RL rollout share one decoding path (same kernels, same PRNG rule, same
stop handling) and cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flax import nnx

from eigen_jax.padding import bucket
from eigen_jax.sampling.engine import Completion, Engine, Request
from eigen_jax.sampling.params import SamplingParams


def generate(
    model: nnx.Module,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams | Sequence[SamplingParams] | None = None,
    max_new_tokens: int | None = None,
    seeds: int | Sequence[int] = 0,
    *,
    decode_fn: Callable[[Sequence[int]], str] | None = None,
    mesh=None,
    max_len: int | None = None,
    steps_per_sync: int | None = None,
) -> list[Completion]:
    """Sample a continuation of every prompt; returns one `Completion` per prompt, in order.

    params: one `SamplingParams` for all prompts or one per prompt (default: temperature 1).
    max_new_tokens: overrides `params.max_new_tokens` when given.
    seeds: one seed per prompt, or an int `s` meaning seeds `s, s+1, ...`. A sequence's samples
        depend only on its own seed and positions, never on the rest of the batch.
    max_len: cache length per row; default fits the longest prompt plus its budget (rounded up
        to a power of two so that similar calls reuse compiled programs).
    steps_per_sync: decode steps per device call. Default: the whole budget in one device loop
        (rounded up to a power of two) when no prompt has stop strings, since a static batch
        admits nothing later and stop ids end rows on device; else 8, the host checks the
        decoded text for stop strings between calls.
    """
    prompts = [list(p) for p in prompts]
    if not prompts:
        raise ValueError("generate needs at least one prompt")
    if params is None or isinstance(params, SamplingParams):
        params = [params or SamplingParams()] * len(prompts)
    params = list(params)
    if len(params) != len(prompts):
        raise ValueError(f"got {len(params)} SamplingParams for {len(prompts)} prompts")
    if max_new_tokens is not None:
        params = [p.replace(max_new_tokens=max_new_tokens) for p in params]
    if isinstance(seeds, int):
        seeds = [seeds + i for i in range(len(prompts))]
    seeds = list(seeds)
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts")
    needed = max(len(p) + q.max_new_tokens for p, q in zip(prompts, params)) + 1
    if max_len is None:
        max_len = bucket(needed, 16)
    if steps_per_sync is None:
        budget = max(q.max_new_tokens for q in params)
        steps_per_sync = 8 if any(q.stop_strings for q in params) else bucket(budget)
    engine = Engine(
        model,
        bucket(len(prompts)),
        max_len,
        mesh=mesh,
        decode_fn=decode_fn,
        steps_per_sync=steps_per_sync,
        max_stop_ids=bucket(max(len(q.stop_token_ids) for q in params), 4),
    )
    requests = [Request(i, p, q, s) for i, (p, q, s) in enumerate(zip(prompts, params, seeds))]
    return engine.run(requests)
