"""Train-step throughput and MFU for the ~25M and ~100M presets, with and without packing.

    .venv/bin/python bench/train_bench.py [--presets bench-25m,bench-100m] [--seq 512] [--batch 4]
        [--dtype bfloat16] [--attention_impls cudnn,xla]

Both variants see the same synthetic dialogue lengths (uniform in [seq/8, seq*3/4], like the
quickstart's reference dialogues relative to their rows): "padded" puts one example per row,
"packed" fills rows first-fit. Reported: real (non-padding) tokens/s, and MFU = model FLOPs of
the computed tokens over this machine's matmul peak measured in the same run, in the compute
dtype (`--dtype`; parameters stay float32). `--attention_impls` repeats both variants per
training attention (on a GPU, cudnn vs xla: packed rows are cuDNN's ragged layout, padded rows
one segment each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from eigen_jax import models  # noqa: E402
from eigen_jax import sharding as shd  # noqa: E402
from eigen_jax.train import state as state_lib  # noqa: E402
from eigen_jax.train.flops import matmul_peak_flops, train_flops_per_token  # noqa: E402
from eigen_jax.train.optimizer import make_optimizer, make_schedule  # noqa: E402
from eigen_jax.train.sft_loss import sft_loss  # noqa: E402


def rows(lengths, seq: int, pack: bool) -> list[list[int]]:
    """Group example lengths into rows (first-fit when packing)."""
    out: list[list[int]] = []
    for n in lengths:
        for r in out if pack else []:
            if sum(r) + n <= seq:
                r.append(n)
                break
        else:
            out.append([n])
    return out


def batch_of(row_lengths, seq: int, vocab: int, rng) -> dict[str, np.ndarray]:
    b = len(row_lengths)
    seg = np.zeros((b, seq), np.int32)
    pos = np.zeros((b, seq), np.int32)
    for i, r in enumerate(row_lengths):
        at = 0
        for j, n in enumerate(r):
            seg[i, at : at + n], pos[i, at : at + n] = j + 1, np.arange(n)
            at += n
    return {
        "tokens": rng.integers(0, vocab, (b, seq)).astype(np.int32),
        "positions": pos,
        "segment_ids": seg,
        "loss_mask": (seg > 0).astype(np.int32),
    }


def bench(
    preset: str,
    seq: int,
    batch: int,
    steps: int,
    peak: float,
    dtype: str = "float32",
    attention_impl: str = "auto",
) -> list[dict]:
    config = models.get_config(preset, dtype=dtype, attention_impl=attention_impl)
    mesh = shd.make_mesh((1, -1, 1))
    model = shd.shard_model(models.Transformer(config, rngs=nnx.Rngs(0)), mesh)
    tx = make_optimizer(make_schedule(1e-4))
    graphdef, params, rest = state_lib.split_model(model)
    state = state_lib.init_train_state(params, tx, mesh)
    step = state_lib.make_train_step(
        graphdef, rest, tx, sft_loss, mesh=mesh, state_sharding=state_lib.state_shardings(state)
    )
    rng = np.random.default_rng(0)
    lengths = rng.integers(seq // 8, seq * 3 // 4, 4096).tolist()
    out = []
    for pack in (False, True):
        grouped = rows(lengths, seq, pack)
        batches = [
            batch_of(grouped[i : i + batch], seq, config.vocab_size, rng)
            for i in range(0, batch * (steps + 1), batch)
        ]
        t0 = time.perf_counter()
        state, m = step(state, batches[0])
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t0
        times = []
        for b in batches[1:]:
            t0 = time.perf_counter()
            state, m = step(state, b)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t0)
        dt = statistics.median(times)
        real = statistics.mean(float((b["segment_ids"] > 0).sum()) for b in batches[1:])
        flops = train_flops_per_token(config, seq) * batch * seq
        out.append(
            {
                "preset": preset,
                "params": config.num_params(),
                "packing": pack,
                "dtype": dtype,
                "attention_impl": attention_impl,
                "step_s": dt,
                "real_tokens_per_s": real / dt,
                "fill": real / (batch * seq),
                "mfu": flops / dt / peak,
                "compile_s": compile_s,
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="bench-25m,bench-100m")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dtype", default="float32", help="compute dtype (and the peak's)")
    ap.add_argument("--attention_impls", default="auto", help="comma list of attention_impl")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_bench.json"))
    args = ap.parse_args()
    peak = matmul_peak_flops(args.dtype)
    results = [
        r
        for p in args.presets.split(",")
        for impl in args.attention_impls.split(",")
        for r in bench(p, args.seq, args.batch, args.steps, peak, args.dtype, impl)
    ]
    device = jax.devices()[0]
    print(
        f"{device.platform} {device.device_kind}: matmul peak {peak / 1e12:.3f} TFLOP/s "
        f"({args.dtype}); load avg {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'preset':12s} {'attention':10s} {'packing':8s} {'step s':>8s} {'real tok/s':>11s} "
        f"{'fill':>6s} {'MFU':>6s}"
    )
    base = {}
    for r in results:
        base.setdefault(r["preset"], r["real_tokens_per_s"])
        print(
            f"{r['preset']:12s} {r['attention_impl']:10s} {str(r['packing']):8s} "
            f"{r['step_s']:8.3f} {r['real_tokens_per_s']:11.0f} {r['fill']:6.2f} "
            f"{100 * r['mfu']:5.1f}%  x{r['real_tokens_per_s'] / base[r['preset']]:.2f} vs "
            "the first row"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "device": f"{device.platform} {device.device_kind}",
                "dtype": args.dtype,
                "peak_flops": peak,
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
