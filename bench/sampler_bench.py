"""KV-cache sampler throughput: raw decode rate, and the continuous-batching engine on a
multi-turn workload against plain static batched decoding of the same token count.

1. Decode tokens/s: `steps.decode_steps` (the engine's device loop) with every slot active at
   position `--context`, for batch 1, 8, 64 and each preset; best of `--repeats` calls of
   `--num_steps` steps after a compile/warm-up call. Measured twice in the same run: attending
   the whole `--max_len` cache (the sampler before live-length attention) and attending the
   live length the engine would pick (`steps.decode_kv_len`, floor `--min_kv_len`).
2. Multi-turn: `--episodes` episodes of 2-4 turns with uneven prompt (32-96), appended-suffix
   (8-40) and turn (8-32 new tokens) lengths run through `Engine` with `--slots` slots; sessions
   re-enter with their suffix, release when done. Baseline measured in the same run: `generate`
   on a static batch of `--slots` rows (same cache length) producing the same number of new
   tokens. Both are timed on a second pass (the first compiles every shape bucket). The ratio
   engine/baseline is the fraction of plain decoding speed the engine keeps while it also
   prefills prompts and suffixes, runs uneven turns and schedules sessions. The engine is also
   run with `min_kv_len=max_len` (every call attends the whole cache) as the same-run baseline
   for live-length attention.

    python bench/sampler_bench.py [--presets bench-25m,bench-100m] [--batches 1,8,64]
                                  [--out bench/results/sampler_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np
from flax import nnx

from eigen_jax.models import Transformer, get_config
from eigen_jax.sampling import Engine, SamplingParams, generate, steps


def decode_rate(
    model,
    batch: int,
    context: int,
    max_len: int,
    num_steps: int,
    repeats: int,
    kv_len: int | None = None,
) -> float:
    """Tokens/s of the jitted multi-step decode loop with `batch` active rows attending the first
    `kv_len` cache slots (None: all `max_len`)."""
    graphdef, params = nnx.split(model)
    cache = model.init_cache(batch, max_len)
    state = steps.SlotState.empty(batch, 4)._replace(
        last_token=np.full((batch,), 5, np.int32),
        position=np.full((batch,), context, np.int32),
        active=np.ones((batch,), bool),
        max_new=np.full((batch,), 1 << 30, np.int32),
        temperature=np.ones((batch,), np.float32),
        seed=np.arange(batch, dtype=np.uint32),
    )
    cache, *_ = jax.block_until_ready(
        steps.decode_steps(graphdef, params, cache, state, num_steps, kv_len)
    )  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        cache, *_ = jax.block_until_ready(
            steps.decode_steps(graphdef, params, cache, state, num_steps, kv_len)
        )
        best = min(best, time.perf_counter() - start)
    return batch * num_steps / best


def make_episodes(num: int, vocab: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    episodes = []
    for _ in range(num):
        turns = int(rng.randint(2, 5))
        episodes.append(
            dict(
                prompt=rng.randint(3, vocab, int(rng.randint(32, 97))).tolist(),
                suffixes=[
                    rng.randint(3, vocab, int(rng.randint(8, 41))).tolist()
                    for _ in range(turns - 1)
                ],
                new_tokens=[int(rng.randint(8, 33)) for _ in range(turns)],
            )
        )
    return episodes


def run_episodes(engine: Engine, episodes) -> tuple[int, float]:
    """Drive every episode through the engine; returns (new tokens generated, seconds)."""
    start = time.perf_counter()
    turn = {}
    for i, ep in enumerate(episodes):
        engine.submit(i, ep["prompt"], SamplingParams(max_new_tokens=ep["new_tokens"][0]), seed=i)
        turn[i] = 0
    generated = 0
    while engine.has_work():
        for c in engine.step():
            i, ep = c.session_id, episodes[c.session_id]
            generated += c.num_tokens
            turn[i] += 1
            if turn[i] < len(ep["new_tokens"]):
                engine.submit(
                    i,
                    ep["suffixes"][turn[i] - 1],
                    SamplingParams(max_new_tokens=ep["new_tokens"][turn[i]]),
                    seed=i,
                )
            else:
                engine.release(i)
    return generated, time.perf_counter() - start


def multi_turn(model, num_episodes: int, slots: int, max_len: int, min_kv_len: int) -> dict:
    episodes = make_episodes(num_episodes, model.config.vocab_size)
    # The first pass compiles every prefill bucket the workload needs; time the second.
    timed = {}
    for name, floor in (("full_kv", max_len), ("live_kv", min_kv_len)):
        run_episodes(Engine(model, slots, max_len, min_kv_len=floor), episodes)
        timed[name] = run_episodes(Engine(model, slots, max_len, min_kv_len=floor), episodes)
    (tokens, seconds), (full_tokens, full_seconds) = timed["live_kv"], timed["full_kv"]
    assert tokens == full_tokens, "live-length attention changed the sampled turns"
    # Baseline: static batch, same slots and cache length, same number of new tokens.
    per_row = -(-tokens // slots)
    prompts = [ep["prompt"] for ep in episodes[:slots]]
    params = SamplingParams(max_new_tokens=per_row)
    generate(model, prompts, params, max_len=max_len)  # compile + warm up
    start = time.perf_counter()
    outs = generate(model, prompts, params, max_len=max_len)
    base_seconds = time.perf_counter() - start
    base_tokens = sum(o.num_tokens for o in outs)
    engine_rate, base_rate = tokens / seconds, base_tokens / base_seconds
    return dict(
        episodes=num_episodes,
        slots=slots,
        max_len=max_len,
        turns=sum(len(ep["new_tokens"]) for ep in episodes),
        prefilled_tokens=sum(len(ep["prompt"]) + sum(map(len, ep["suffixes"])) for ep in episodes),
        engine_new_tokens=tokens,
        engine_seconds=seconds,
        engine_tok_s=engine_rate,
        engine_full_kv_seconds=full_seconds,
        engine_full_kv_tok_s=tokens / full_seconds,
        live_over_full_kv=full_seconds / seconds,
        min_kv_len=min_kv_len,
        baseline_new_tokens=base_tokens,
        baseline_seconds=base_seconds,
        baseline_tok_s=base_rate,
        engine_over_baseline=engine_rate / base_rate,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="bench-25m,bench-100m")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--max_len", type=int, default=512)
    parser.add_argument("--num_steps", type=int, default=8)
    parser.add_argument("--min_kv_len", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--multi_turn_preset", default="bench-25m")
    parser.add_argument("--out", default="bench/results/sampler_bench.json")
    args = parser.parse_args()

    decode = []
    kv_len = steps.decode_kv_len(
        np.asarray([args.context]),
        np.ones(1, bool),
        np.zeros(1),
        np.asarray([1 << 30]),
        args.num_steps,
        args.max_len,
        args.min_kv_len,
    )
    print(f"decode at position {args.context}: full cache {args.max_len} vs live kv_len {kv_len}")
    print(
        f"{'preset':<12}{'params':>10}{'batch':>7}{'full tok/s':>12}{'live tok/s':>12}"
        f"{'live/full':>10}"
    )
    for preset in args.presets.split(","):
        model = Transformer(get_config(preset), rngs=nnx.Rngs(0))
        for batch in map(int, args.batches.split(",")):
            full, live = (
                decode_rate(
                    model, batch, args.context, args.max_len, args.num_steps, args.repeats, kv
                )
                for kv in (None, kv_len)
            )
            decode.append(
                dict(
                    preset=preset,
                    params=model.config.num_params(),
                    batch=batch,
                    context=args.context,
                    max_len=args.max_len,
                    tok_s=full,
                    kv_len=kv_len,
                    live_kv_tok_s=live,
                )
            )
            print(
                f"{preset:<12}{model.config.num_params() / 1e6:>9.1f}M{batch:>7}{full:>12.1f}"
                f"{live:>12.1f}{live / full:>10.2f}"
            )

    model = Transformer(get_config(args.multi_turn_preset), rngs=nnx.Rngs(0))
    mt = multi_turn(model, args.episodes, args.slots, args.max_len, args.min_kv_len)
    print(
        f"\nmulti-turn ({args.multi_turn_preset}, {mt['episodes']} episodes, {mt['turns']} "
        f"turns, {mt['slots']} slots, {mt['prefilled_tokens']} prefilled tokens)"
    )
    print(f"{'':<22}{'new tokens':>12}{'seconds':>10}{'tok/s':>10}")
    print(
        f"{'engine, full kv':<22}{mt['engine_new_tokens']:>12}"
        f"{mt['engine_full_kv_seconds']:>10.2f}{mt['engine_full_kv_tok_s']:>10.1f}"
    )
    print(
        f"{'engine, live kv':<22}{mt['engine_new_tokens']:>12}{mt['engine_seconds']:>10.2f}"
        f"{mt['engine_tok_s']:>10.1f}"
    )
    print(
        f"{'static batch decode':<22}{mt['baseline_new_tokens']:>12}"
        f"{mt['baseline_seconds']:>10.2f}{mt['baseline_tok_s']:>10.1f}"
    )
    print(
        f"engine (live kv) / static = {mt['engine_over_baseline']:.3f}; "
        f"live kv / full kv = {mt['live_over_full_kv']:.3f}"
    )

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            dict(
                device=str(jax.devices()[0]),
                host=platform.node(),
                jax=jax.__version__,
                decode=decode,
                multi_turn=mt,
            ),
            f,
            indent=2,
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
