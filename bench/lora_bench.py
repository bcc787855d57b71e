"""Train-step throughput and memory: full-parameter vs LoRA, at the bench model sizes.

For each preset, three variants of the same SFT train step (`train.state.make_train_step` with
`sft_loss`: forward + backward + AdamW): every weight trained (float32), LoRA adapters over a
frozen float32 base, and LoRA over a frozen bfloat16 base. tokens/s is the median of
`--repeats` timed steps after warm-up; memory is XLA's analysis of the compiled step
(arguments + outputs - donated aliases + temporaries: what one step holds at its peak) and the
bytes of the train state the optimizer keeps.

    python bench/lora_bench.py [--presets bench-25m,bench-100m] [--seq 512] [--batch 2]
                               [--rank 16] [--out bench/results/lora_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from eigen_jax.models import (  # noqa: E402
    Transformer,
    get_config,
    lora_io,  # noqa: E402
)
from eigen_jax.models.lora import LoraConfig  # noqa: E402
from eigen_jax.train import state as state_lib  # noqa: E402
from eigen_jax.train.sft_loss import sft_loss  # noqa: E402

VARIANTS = {
    "full": (None, "float32"),
    "lora": (True, "float32"),
    "lora-bf16-base": (True, "bfloat16"),
}


def _nbytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def bench_variant(preset: str, variant: str, seq: int, batch: int, rank: int, repeats: int) -> dict:
    lora, param_dtype = VARIANTS[variant]
    config = get_config(preset, param_dtype=param_dtype, remat="none")
    model = Transformer(config, rngs=nnx.Rngs(0))
    if lora:
        model = lora_io.add_lora(model, LoraConfig(rank=rank, alpha=2.0 * rank))
    graphdef, params, frozen, rest = state_lib.split_trainable(model)
    tx = optax.adamw(1e-4)
    state = state_lib.init_train_state(params, tx)
    step = state_lib.make_train_step(graphdef, rest, tx, sft_loss, frozen=frozen)
    rng = np.random.default_rng(0)
    batch_arrays = {
        "tokens": jnp.asarray(rng.integers(0, config.vocab_size, (batch, seq)), jnp.int32),
        "positions": jnp.tile(jnp.arange(seq, dtype=jnp.int32), (batch, 1)),
        "segment_ids": jnp.ones((batch, seq), jnp.int32),
        "loss_mask": jnp.ones((batch, seq), jnp.int32),
    }
    mem = step.lower(state, batch_arrays).compile().memory_analysis()
    peak = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
    )
    for _ in range(2):  # compile + warm up
        state, _ = step(state, batch_arrays)
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = step(state, batch_arrays)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    return {
        "preset": preset,
        "variant": variant,
        "seq": seq,
        "batch": batch,
        "rank": rank,
        "trainable_params": sum(x.size for x in jax.tree.leaves(params)),
        "frozen_bytes": _nbytes(frozen) if frozen is not None else 0,
        "train_state_bytes": _nbytes(state.params) + _nbytes(state.opt_state),
        "step_peak_bytes": int(peak),
        "temp_bytes": int(mem.temp_size_in_bytes),
        "step_s_median": step_s,
        "tokens_per_s": batch * seq / step_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="bench-25m,bench-100m")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "lora_bench.json")
    )
    args = parser.parse_args()
    rows = [
        bench_variant(p, v, args.seq, args.batch, args.rank, args.repeats)
        for p in args.presets.split(",")
        for v in args.variants.split(",")
    ]
    mib = lambda b: f"{b / 2**20:9.1f}"  # noqa: E731
    print(
        f"{'preset':<11}{'variant':<15}{'trainable':>11}{'state MiB':>10}{'frozen MiB':>11}"
        f"{'peak MiB':>10}{'step s':>8}{'tokens/s':>10}"
    )
    for r in rows:
        print(
            f"{r['preset']:<11}{r['variant']:<15}{r['trainable_params'] / 1e6:>10.2f}M"
            f"{mib(r['train_state_bytes']):>10}{mib(r['frozen_bytes']):>11}"
            f"{mib(r['step_peak_bytes']):>10}{r['step_s_median']:>8.3f}"
            f"{r['tokens_per_s']:>10.0f}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "device": str(jax.devices()[0].device_kind),
                "jax": jax.__version__,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "results": rows,
            },
            f,
            indent=2,
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
