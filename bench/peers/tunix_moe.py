"""Tunix side of `bench/moe_bench.py`: runs INSIDE the Tunix venv (`make_venv.sh`) and imports
nothing of eigen-jax. Times Tunix's Qwen3 `MoELayer` (on a CPU it takes its own dense
every-expert path: its megablox kernel needs a TPU/GPU mesh) at the spec's shapes, forward and
forward+backward, median of `--repeats` after warm-up; one JSON row out."""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx
from tunix.models.qwen3 import model as qwen3


def _median_s(fn, *args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    for k, v in dict(tokens=4096, hidden=512, experts=32, top_k=4, moe_ffn=256, repeats=5).items():
        p.add_argument(f"--{k}", type=int, default=v)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    config = dataclasses.replace(
        qwen3.ModelConfig.qwen3_30b_a3b(),
        embed_dim=a.hidden,
        hidden_dim=a.moe_ffn,
        num_experts=a.experts,
        num_experts_per_tok=a.top_k,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    )
    layer = qwen3.MoELayer(config, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (a.tokens // 512, 512, a.hidden))
    fwd = nnx.jit(lambda m, x: m(x))
    train = nnx.jit(nnx.grad(lambda m, x: jnp.sum(m(x) ** 2)))
    row = {
        "layer": "tunix moe (its CPU path)",
        "forward_tokens_per_s": a.tokens / _median_s(fwd, layer, x, repeats=a.repeats),
        "train_tokens_per_s": a.tokens / _median_s(train, layer, x, repeats=a.repeats),
    }
    with open(a.out, "w") as f:
        json.dump(row, f)


if __name__ == "__main__":
    main()
