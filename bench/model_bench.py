"""Training-step throughput and MFU of the eigen-jax transformer.

For each model preset: a jitted forward + backward of the next-token loss at `--seq` tokens,
timed after warm-up; tokens/s and model FLOPs utilisation (MFU) are reported against this
machine's matmul peak, measured in the same run with a large jitted matmul of the same dtype
(so the ratio is meaningful on any host: CPU, GPU or TPU). Prints a table, writes JSON.

    python bench/model_bench.py [--presets bench-25m,bench-100m] [--seq 512] [--batch 2]
                                [--dtype float32] [--out bench/results/model_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eigen_jax.models import Transformer, get_config
from eigen_jax.train.flops import matmul_peak_flops, train_flops_per_token


def _time(fn, *args, repeats: int) -> list[float]:
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return times


def _loss(model, ids):
    logits = model(ids)
    logp = jax.nn.log_softmax(logits[:, :-1])
    return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1))


def bench_preset(name: str, seq: int, batch: int, dtype: str, repeats: int, peak: float) -> dict:
    config = get_config(name, dtype=dtype, param_dtype="float32")
    model = Transformer(config, rngs=nnx.Rngs(0))
    ids = jnp.asarray(
        np.random.RandomState(0).randint(0, config.vocab_size, (batch, seq)), jnp.int32
    )
    step = jax.jit(nnx.value_and_grad(_loss))
    times = _time(step, model, ids, repeats=repeats)
    step_s = statistics.median(times)
    tokens_per_s = batch * seq / step_s
    flops_per_token = train_flops_per_token(config, seq)
    return {
        "preset": name,
        "params": config.num_params(),
        "seq": seq,
        "batch": batch,
        "dtype": dtype,
        "step_s_median": step_s,
        "step_s_min": min(times),
        "tokens_per_s": tokens_per_s,
        "flops_per_token": flops_per_token,
        "model_tflops_per_s": tokens_per_s * flops_per_token / 1e12,
        "mfu": tokens_per_s * flops_per_token / peak,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="bench-25m,bench-100m")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "model_bench.json")
    )
    args = parser.parse_args()

    dtype = jnp.float32 if args.dtype == "float32" else jnp.bfloat16
    peak = matmul_peak_flops(dtype)
    rows = [
        bench_preset(name, args.seq, args.batch, args.dtype, args.repeats, peak)
        for name in args.presets.split(",")
    ]

    device = jax.devices()[0]
    print(
        f"device: {device.platform} {device.device_kind} x{jax.device_count()}  "
        f"matmul peak ({args.dtype}): {peak / 1e12:.3f} TFLOP/s"
    )
    header = (
        f"{'preset':<12}{'params':>10}{'seq':>6}{'batch':>6}{'step s':>9}"
        f"{'tokens/s':>11}{'TFLOP/s':>9}{'MFU':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['preset']:<12}{r['params'] / 1e6:>9.1f}M{r['seq']:>6}{r['batch']:>6}"
            f"{r['step_s_median']:>9.3f}{r['tokens_per_s']:>11.0f}"
            f"{r['model_tflops_per_s']:>9.3f}{r['mfu']:>8.1%}"
        )

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    result = {
        "device": f"{device.platform} {device.device_kind}",
        "device_count": jax.device_count(),
        "host": platform.node(),
        "jax": jax.__version__,
        "matmul_peak_flops": peak,
        "results": rows,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
