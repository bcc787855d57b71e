"""Compile time against depth, and the scanned stack against the unrolled one.

Part 1 (deviceless TPU, `--topology`): the SFT train step of `--preset` cut to each of
`--layers`, scanned and (up to `--max_unrolled` layers) unrolled, compiled for the slice with
`launch/compile.py`'s own program builder; compile seconds and XLA's per-chip temp bytes.
Part 2 (this host's CPU): for `--cpu_presets`, the same model scanned vs unrolled: compile
seconds, forward+backward step and an 8-token decode call, timed after warm-up (median).
Prints tables and writes JSON (ratios are within one run, the only comparison that holds on a
shared machine).

    python bench/compile_bench.py [--topology v5p-64] [--preset qwen3-8b] [--layers 8,36]
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
from flax import nnx  # noqa: E402

from eigen_jax import sharding as shd  # noqa: E402
from eigen_jax.aot import programs as P  # noqa: E402
from eigen_jax.aot.report import compile_program  # noqa: E402
from eigen_jax.aot.topology import parse_topology  # noqa: E402
from eigen_jax.models import Transformer, get_config  # noqa: E402
from eigen_jax.sampling import steps  # noqa: E402
from eigen_jax.train.optimizer import make_optimizer, make_schedule  # noqa: E402
from eigen_jax.train.sft_loss import sft_loss  # noqa: E402


def tpu_depth(args) -> list[dict]:
    topo = parse_topology(args.topology)
    mesh = shd.make_mesh((1, topo.chips, 1), devices=topo.devices())
    tx = make_optimizer(make_schedule())
    rows = []
    for layers in map(int, args.layers.split(",")):
        for scan in (True, False):
            if not scan and layers > args.max_unrolled:
                continue
            cfg = get_config(
                args.preset,
                num_layers=layers,
                dtype="bfloat16",
                param_dtype="float32",
                remat="full",
                scan_layers=scan,
            )
            program = P.train_program("sft", cfg, mesh, tx, sft_loss, args.batch, args.seq)
            report, _ = compile_program(program, topo.chip)
            rows.append(
                {
                    "layers": layers,
                    "scan": scan,
                    "compile_s": report.compile_seconds,
                    "temp_gib": report.temp_bytes / 2**30,
                    "peak_gib": report.peak_bytes_per_chip / 2**30,
                }
            )
            print(rows[-1], flush=True)
    return rows


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_scan_vs_unrolled(args) -> list[dict]:
    rows = []
    ids = jnp.asarray(np.random.RandomState(0).randint(3, 1000, (args.cpu_batch, args.cpu_seq)))

    def loss(m, ids):
        logp = jax.nn.log_softmax(m(ids)[:, :-1])
        return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1))

    for preset in args.cpu_presets.split(","):
        for scan in (True, False):
            model = Transformer(get_config(preset, scan_layers=scan), rngs=nnx.Rngs(0))
            graphdef, params = nnx.split(model)
            train = jax.jit(lambda p: nnx.grad(loss)(nnx.merge(graphdef, p), ids))
            t0 = time.perf_counter()
            jax.block_until_ready(train(params))
            compile_s = time.perf_counter() - t0
            step_s = _median_time(lambda: train(params), args.repeats)
            cache = model.init_cache(8, 512)
            state = steps.SlotState.empty(8, 1)._replace(
                active=np.ones(8, bool),
                max_new=np.full(8, 10**6, np.int32),
                position=np.full(8, 64, np.int32),
                temperature=np.ones(8, np.float32),
            )
            decode = lambda c: steps.decode_steps(graphdef, params, c, state, 8)  # noqa: E731
            cache = jax.block_until_ready(decode(cache))[0]
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                cache = jax.block_until_ready(decode(cache))[0]
                times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "preset": preset,
                    "scan": scan,
                    "train_compile_s": compile_s,
                    "train_step_s": step_s,
                    "decode_call_s": statistics.median(times),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--topology", default="v5p-64")
    ap.add_argument("--preset", default="qwen3-8b")
    ap.add_argument("--layers", default="8,36")
    ap.add_argument("--max_unrolled", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--cpu_presets", default="bench-25m")
    ap.add_argument("--cpu_batch", type=int, default=2)
    ap.add_argument("--cpu_seq", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip_cpu", action="store_true")
    ap.add_argument("--out", default="bench/results/compile_bench.json")
    args = ap.parse_args()
    out = {"tpu_depth": tpu_depth(args)}
    if not args.skip_cpu:
        out["cpu"] = cpu_scan_vs_unrolled(args)
    scanned = [r for r in out["tpu_depth"] if r["scan"]]
    if len(scanned) >= 2:
        out["compile_growth"] = scanned[-1]["compile_s"] / scanned[0]["compile_s"]
        print(
            f"scanned SFT compile, {scanned[-1]['layers']} vs {scanned[0]['layers']} layers: "
            f"{out['compile_growth']:.2f}x"
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
