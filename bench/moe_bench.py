"""One MoE layer on this host: tokens/s of the grouped-matmul paths (ragged_dot, tiled), the dense
reference, a dense SwiGLU layer of equal active FLOPs, and (when its venv exists) Tunix's
Qwen3-MoE layer.

Why: an MoE layer is worth its parameters only if its cost follows its *active* FLOPs. The
ratio `moe ragged|tiled / dense equal-active` says how close the sort + grouped matmuls come to
a dense layer doing the same useful work; `dense reference` is what every-expert-on-every-token
costs (Tunix's CPU path is that too: its grouped-matmul kernel is TPU/GPU only). Forward and
forward+backward, median of `--repeats` after warm-up, all in one run. Table + JSON.

    python bench/moe_bench.py [--tokens 4096] [--hidden 512] [--experts 32] [--top_k 4]
                              [--moe_ffn 256] [--out bench/results/moe_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
from flax import nnx

from eigen_jax.models import get_config, moe
from eigen_jax.models.layers import MLP

TUNIX_VENV = os.path.expanduser(os.environ.get("TUNIX_VENV", "~/.cache/eigen-jax/venv-tunix"))


def _median_s(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _measure(layer, x, call, repeats: int) -> dict[str, float]:
    fwd = nnx.jit(lambda m, x: call(m, x))
    train = nnx.jit(nnx.grad(lambda m, x: jnp.sum(call(m, x) ** 2)))
    n = x.shape[0] * x.shape[1]
    return {
        "forward_tokens_per_s": n / _median_s(fwd, layer, x, repeats=repeats),
        "train_tokens_per_s": n / _median_s(train, layer, x, repeats=repeats),
    }


def run_ours(args) -> list[dict]:
    config = get_config(
        "tiny-qwen3-moe",
        hidden_size=args.hidden,
        num_experts=args.experts,
        num_experts_per_tok=args.top_k,
        moe_intermediate_size=args.moe_ffn,
        intermediate_size=args.top_k * args.moe_ffn,
    )
    x = jax.random.normal(jax.random.key(0), (args.tokens // 512, 512, args.hidden))
    mask = jnp.ones(x.shape[:2])
    rows = []
    for impl in ("ragged", "tiled", "dense"):
        layer = moe.SparseMoE(config.replace(moe_impl=impl), rngs=nnx.Rngs(0))
        rows.append(
            {
                "layer": f"eigen-jax moe {impl}",
                **_measure(layer, x, lambda m, x: m(x, mask)[0], args.repeats),
            }
        )
    dense = MLP(config, rngs=nnx.Rngs(0))  # intermediate = top_k * moe_ffn: equal active FLOPs
    rows.append(
        {
            "layer": "eigen-jax dense, equal active FLOPs",
            **_measure(dense, x, lambda m, x: m(x), args.repeats),
        }
    )
    return rows


def run_tunix(args) -> list[dict]:
    if not os.path.exists(os.path.join(TUNIX_VENV, "bin", "python")):
        return [{"layer": "tunix moe", "skipped": f"no Tunix venv at {TUNIX_VENV}"}]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "tunix.json")
        cmd = [
            os.path.join(TUNIX_VENV, "bin", "python"),
            os.path.join(os.path.dirname(__file__), "peers", "tunix_moe.py"),
            "--out",
            out,
        ]
        for k in ("tokens", "hidden", "experts", "top_k", "moe_ffn", "repeats"):
            cmd += [f"--{k}", str(getattr(args, k))]
        subprocess.run(cmd, check=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
        with open(out) as f:
            return [json.load(f)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--experts", type=int, default=32)
    p.add_argument("--top_k", type=int, default=4)
    p.add_argument("--moe_ffn", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="bench/results/moe_bench.json")
    args = p.parse_args(argv)
    rows = run_ours(args) + run_tunix(args)
    base = rows[3]
    print(f"{'layer':<38}{'fwd tok/s':>12}{'train tok/s':>13}{'fwd x':>8}{'train x':>9}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['layer']:<38}  skipped: {r['skipped']}")
            continue
        r["forward_vs_dense"] = r["forward_tokens_per_s"] / base["forward_tokens_per_s"]
        r["train_vs_dense"] = r["train_tokens_per_s"] / base["train_tokens_per_s"]
        print(
            f"{r['layer']:<38}{r['forward_tokens_per_s']:>12.0f}{r['train_tokens_per_s']:>13.0f}"
            f"{r['forward_vs_dense']:>8.2f}{r['train_vs_dense']:>9.2f}"
        )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {"args": vars(args), "backend": jax.default_backend(), "rows": rows, "argv": sys.argv},
            f,
            indent=1,
        )


if __name__ == "__main__":
    main()
