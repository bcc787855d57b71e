"""Side-by-side eigen-jax vs Tunix (google-tunix): GRPO step, sampler decode, SFT train step.

One command: for each model size, eigen-jax writes a random-init HF Qwen3 checkpoint, measures
itself in this process, then runs `bench/peers/tunix_bench.py` in the Tunix venv (created on
first use by `bench/peers/make_venv.sh`), which loads the SAME weights with Tunix's own loader
and measures the same workloads. Both processes run one after the other (never concurrently) on
one device. Weight parity is checked first: both stacks' logits on the same ids must agree.

Workloads (same shapes on both sides; medians of `repeats` after warm-up, compile time apart):
  grpo    one GRPO global step: rollout of G samples for each prompt (temperature 1, fixed
          length: the end-of-sequence id is never sampled) + reward + group advantages + one
          policy update (μ=1, β=0, token-mean clipped surrogate, AdamW, clip 1.0).
  decode  batched sampling from `prompt_len` prompts; decode tok/s = extra tokens / extra time
          between two generation lengths (prefill and host overheads cancel).
  train   full-parameter next-token step (forward + backward + AdamW) at `train_seq` tokens;
          MFU of both stacks = model FLOPs per token (`train_flops_per_token`) x tokens/s over a
          matmul rate measured in this run in the model's dtype (a large jitted matmul).
          `--attention_impls cudnn,xla` measures eigen-jax's step once per training attention
          on the same weights (the first is the one set against Tunix's ratio).
  train_lora  the same step training rank-16 LoRA adapters on every attention projection and
          MLP over the frozen weights (eigen-jax's `models.lora` vs Tunix's qwix LoRA).

    python bench/compare_tunix.py [--config cpu|gpu-1b] [--attention_impls cudnn,xla]
        [--metrics grpo,decode,train,train_lora]
        [--no_tunix] [--out bench/results/compare_tunix.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# On a GPU, JAX preallocates 75% of the memory in the first process, which would leave the Tunix
# subprocess too little: each stack gets under half (read at backend start; no effect on CPU).
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_report import report  # noqa: E402

from eigen_jax import models  # noqa: E402
from eigen_jax.models import lora_io  # noqa: E402
from eigen_jax.models.config import ATTENTION_IMPLS  # noqa: E402
from eigen_jax.models.lora import LoraConfig  # noqa: E402
from eigen_jax.rl import advantages as adv_lib  # noqa: E402
from eigen_jax.rl.episode import Episode  # noqa: E402
from eigen_jax.rl.learner_fns import make_grpo_loss  # noqa: E402
from eigen_jax.rl.rollout import sync_engine_params  # noqa: E402
from eigen_jax.rl.train_batch import cheapest_train_batch  # noqa: E402
from eigen_jax.sampling import Engine, Request, SamplingParams, generate  # noqa: E402
from eigen_jax.sampling.shapes import token_cost_of  # noqa: E402
from eigen_jax.train import state as state_lib  # noqa: E402
from eigen_jax.train.flops import matmul_peak_flops, train_flops_per_token  # noqa: E402
from eigen_jax.train.optimizer import make_optimizer, make_schedule  # noqa: E402
from eigen_jax.train.sft_loss import sft_loss  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
_BASE = dict(seed=0, repeats=5, clip_eps=0.2, lora_rank=16)
# Tunix 0.1.7's Qwen3 `apply_rope` ignores `ModelConfig.rope_theta` (always 1e6, the released
# Qwen3 value), so every model here uses 1e6 or the two stacks would compute different functions.
_ROPE = {"rope_theta": 1_000_000.0}
# Model sizes per --config and the shapes of every workload. `cpu` fits a 2-core machine in
# well under 20 minutes for both stacks; `gpu-1b` is ~1B parameters in bf16 for GPU hosts.
CONFIGS = {
    "cpu": [
        dict(
            _BASE,
            name="tiny-qwen3",
            preset="tiny-qwen3",
            overrides=_ROPE,
            dtype="float32",
            batch=8,
            prompt_len=32,
            max_len=256,
            decode_short=16,
            decode_long=80,
            train_batch=4,
            train_seq=128,
            group_size=8,
            grpo_prompts=2,
            grpo_new_tokens=32,
        ),
        dict(
            _BASE,
            name="bench-25m",
            preset="bench-25m",
            overrides=_ROPE,
            dtype="float32",
            batch=8,
            prompt_len=32,
            max_len=256,
            decode_short=16,
            decode_long=64,
            train_batch=2,
            train_seq=256,
            group_size=8,
            grpo_prompts=1,
            grpo_new_tokens=32,
        ),
    ],
    # The issue's ~100M row (MFU >= 50% of the measured matmul peak); a separate config because
    # it roughly doubles the `cpu` run's wall time on a 2-core machine.
    "cpu-100m": [
        dict(
            _BASE,
            name="bench-100m",
            preset="bench-100m",
            overrides=_ROPE,
            dtype="float32",
            batch=8,
            prompt_len=32,
            max_len=256,
            decode_short=16,
            decode_long=64,
            train_batch=2,
            train_seq=256,
            group_size=8,
            grpo_prompts=1,
            grpo_new_tokens=32,
            repeats=3,
        ),
    ],
    # Batch sized to fit each stack's < half of an H200 (measured: train batch 8 x 2048 asked
    # XLA for a 47.8 GiB temp buffer, GRPO with 64 x 512 tokens 50.5 GiB, both out of memory).
    "gpu-1b": [
        dict(
            _BASE,
            name="qwen3-1b",
            preset="qwen3-1.7b",
            overrides={"num_layers": 14},
            dtype="bfloat16",
            batch=64,
            prompt_len=256,
            max_len=1024,
            decode_short=64,
            decode_long=320,
            train_batch=4,
            train_seq=2048,
            group_size=16,
            grpo_prompts=2,
            grpo_new_tokens=256,
        ),
    ],
}


def _median_time(fn, repeats: int) -> tuple[float, float, list[float]]:
    """(compile+first-call seconds, median seconds, all seconds) of a blocking `fn`."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), times


def prompts_of(spec, vocab) -> list[list[int]]:
    rng = np.random.RandomState(spec["seed"])  # the same ids tunix_bench.prompts_text draws
    return [rng.randint(3, vocab, spec["prompt_len"]).tolist() for _ in range(spec["batch"])]


def bench_decode(model, spec) -> dict:
    prompts = prompts_of(spec, model.config.vocab_size)
    runs = {}
    for n in (spec["decode_short"], spec["decode_long"]):
        params = SamplingParams(temperature=1.0, max_new_tokens=n)
        fn = lambda: generate(
            model,
            prompts,
            params,
            max_len=spec["max_len"],  # noqa: E731
            steps_per_sync=spec.get("steps_per_sync"),
        )
        first, med, times = _median_time(fn, spec["repeats"])
        assert all(c.num_tokens == n for c in fn())
        runs[n] = {"compile_s": first, "s": med, "all_s": times}
    short, long_ = runs[spec["decode_short"]], runs[spec["decode_long"]]
    extra = spec["batch"] * (spec["decode_long"] - spec["decode_short"])
    return {
        "generate_tok_s": spec["batch"] * spec["decode_long"] / long_["s"],
        "decode_tok_s": extra / max(long_["s"] - short["s"], 1e-9),
        "compile_s": short["compile_s"],
        "runs": runs,
    }


def _optimizer():
    # Both stacks: AdamW(b1 .9, b2 .95, wd .01) after global-norm clipping at 1.0.
    return make_optimizer(make_schedule(learning_rate=1e-5))


def bench_train(model, spec, peak: float, lora_rank: int | None = None) -> dict:
    """The SFT step; with `lora_rank`, LoRA adapters (rank r, alpha 2r, attention + MLP) train
    over the frozen weights (`train_lora`: the same against Tunix's qwix LoRA)."""
    if lora_rank:
        model = lora_io.add_lora(model, LoraConfig(rank=lora_rank, alpha=2.0 * lora_rank))
    graphdef, params, frozen, rest = state_lib.split_trainable(model)
    params = jax.tree.map(jnp.copy, params)  # the step donates its state
    state = state_lib.init_train_state(params, _optimizer())
    step = state_lib.make_train_step(graphdef, rest, _optimizer(), sft_loss, frozen=frozen)
    b, t = spec["train_batch"], spec["train_seq"]
    rng = np.random.RandomState(spec["seed"] + 1)
    batch = {
        "tokens": jnp.asarray(rng.randint(3, model.config.vocab_size, (b, t)), jnp.int32),
        "positions": jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)),
        "segment_ids": jnp.ones((b, t), jnp.int32),
        "loss_mask": jnp.ones((b, t), jnp.int32),
    }
    holder = [state]

    def run():
        holder[0], metrics = step(holder[0], batch)
        return metrics["loss"]

    first, med, times = _median_time(run, spec["repeats"])
    tokens_per_s = b * t / med
    flops = train_flops_per_token(model.config, t)
    return {
        "step_s": med,
        "all_s": times,
        "compile_s": first,
        "tokens_per_s": tokens_per_s,
        "flops_per_token": flops,
        "mfu": tokens_per_s * flops / peak,
    }


def reward_of(tokens) -> float:
    """1 if more than half the sampled ids are even, else 0 (tunix_bench.reward_fn's rule):
    binary like a checker's verdict, yet it varies within a group, so advantages are nonzero."""
    return float(2 * int(np.sum(np.asarray(tokens) % 2 == 0)) > len(tokens))


def bench_grpo(model, spec) -> dict:
    """The eigen-jax GRPO step as `eigen_jax.rl.grpo` composes it: rollout on a persistent
    engine synced to the learner's weights (a group's prompt prefilled once) → rewards → group
    advantages → trajectory batch (the group's prompt shared when cheaper, as in `run_grpo`) →
    one clipped-surrogate update (μ=1: π_old is the detached current policy inside the loss, no
    separate forward, exactly as `GRPOLearner.update` does)."""
    g, n_prompts, new = spec["group_size"], spec["grpo_prompts"], spec["grpo_new_tokens"]
    graphdef, params, rest = state_lib.split_model(model)
    params = jax.tree.map(jnp.copy, params)
    state = state_lib.init_train_state(params, _optimizer())
    loss = make_grpo_loss(
        "grpo", eps_low=spec["clip_eps"], eps_high=spec["clip_eps"], is_cap=None, with_entropy=False
    )
    step_fn = state_lib.make_train_step(graphdef, rest, _optimizer(), loss)
    engine = Engine(model, g * n_prompts, spec["max_len"])
    token_cost = token_cost_of(model.config)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=new)
    rng = np.random.RandomState(spec["seed"] + 2)
    holder, counter = [state], [0]

    def one_step():
        counter[0] += 1
        prompts = [
            rng.randint(3, model.config.vocab_size, spec["prompt_len"]).tolist()
            for _ in range(n_prompts)
        ]
        sync_engine_params(engine, graphdef, holder[0].params, rest)
        reqs = [
            Request((p, k), prompts[p], sampling, seed=counter[0] * 10_000 + p * g + k)
            for p in range(n_prompts)
            for k in range(g)
        ]
        episodes = []
        for c in engine.run(reqs):
            p, k = c.session_id
            n = len(prompts[p])
            mask = np.r_[np.zeros(n, bool), np.ones(c.num_tokens, bool)]
            episodes.append(
                Episode(
                    f"p{p}",
                    p,
                    k,
                    np.r_[prompts[p], c.token_ids],
                    mask,
                    np.r_[np.zeros(n), c.logprobs],
                    [(n, n + c.num_tokens)],
                    reward_of(c.token_ids),
                    "agent_stop",
                    [],
                )
            )
        rewards = np.array([e.reward for e in episodes], np.float32).reshape(n_prompts, g)
        adv = np.asarray(adv_lib.get("grpo")(rewards)).reshape(-1)
        batch = {
            k: jnp.asarray(v)
            for k, v in cheapest_train_batch(
                episodes, adv, "trajectory", token_cost, max_len=spec["max_len"]
            ).items()
        }
        holder[0], sums = step_fn(holder[0], batch)
        return sums["pg_loss"]

    first, med, times = _median_time(one_step, spec["repeats"])
    return {
        "step_s": med,
        "all_s": times,
        "compile_s": first,
        "sequences": g * n_prompts,
        "new_tokens_per_s": g * n_prompts * new / med,
    }


def probe_ids(spec, vocab) -> list[list[int]]:
    return np.random.RandomState(spec["seed"] + 3).randint(3, vocab, (2, 16)).tolist()


def run_tunix(spec, workdir: str, venv: str) -> dict:
    spec_path, out_path = os.path.join(workdir, "spec.json"), os.path.join(workdir, "tunix.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    python = os.path.join(venv, "bin", "python")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one device, as here
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [
            python,
            os.path.join(HERE, "peers", "tunix_bench.py"),
            "--spec",
            spec_path,
            "--out",
            out_path,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tunix_bench failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    with open(out_path) as f:
        return json.load(f)


def ensure_venv(venv: str | None) -> str:
    cmd = [os.path.join(HERE, "peers", "make_venv.sh")] + ([venv] if venv else [])
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def with_attention(model, impl: str | None):
    """`model`'s weights (shared, not copied) under another `attention_impl` (a static choice
    of the module graph); None keeps the model's own."""
    if impl is None or impl == model.config.attention_impl:
        return model
    config = model.config.replace(attention_impl=impl)
    abstract = nnx.eval_shape(lambda: models.Transformer(config, rngs=nnx.Rngs(0)))
    return nnx.merge(nnx.graphdef(abstract), nnx.state(model))


def train_key(impl: str | None) -> str:
    return "train" if impl is None else f"train[{impl}]"


def bench_ours(model, spec, metrics, peak) -> dict:
    out = {}
    for name in metrics:
        for impl in (spec.get("attention_impls") or [None]) if name == "train" else [None]:
            key = train_key(impl) if name == "train" else name
            print(f"[eigen-jax] {spec['name']} {key} ...", flush=True)
            out[key] = {
                "decode": lambda: bench_decode(model, spec),
                "train": lambda: bench_train(with_attention(model, impl), spec, peak),
                "train_lora": lambda: bench_train(model, spec, peak, spec["lora_rank"]),
                "grpo": lambda: bench_grpo(model, spec),
            }[name]()
    return out


def bench_model(spec, metrics, venv, peak, workdir) -> dict:
    """eigen-jax's figures, then Tunix's on the same weights (skipped when `venv` is None)."""
    config = models.get_config(
        spec["preset"], dtype=spec["dtype"], param_dtype="float32", **spec["overrides"]
    )
    model = models.Transformer(config, rngs=nnx.Rngs(spec["seed"]))
    ckpt = os.path.join(workdir, "ckpt")
    if venv is not None:  # the checkpoint is how Tunix gets the same weights
        models.save_pretrained(model, config, ckpt)
    ids = probe_ids(spec, config.vocab_size)
    spec = dict(spec, checkpoint=ckpt, probe_ids=ids, metrics=metrics)
    ours = {
        "params": config.num_params(),
        "probe_logits": np.asarray(model(jnp.asarray(ids, jnp.int32)), np.float32),
    }
    ours.update(bench_ours(model, spec, metrics, peak))
    ours_logits = ours.pop("probe_logits")
    if venv is None:
        return {
            "spec": {k: v for k, v in spec.items() if k != "probe_ids"},
            "eigen_jax": ours,
            "tunix": {"skipped": "no Tunix venv (--no_tunix)"},
        }
    print(f"[tunix] {spec['name']} ...", flush=True)
    try:
        theirs = run_tunix(spec, workdir, venv)
    except RuntimeError as e:  # keep eigen-jax's figures: they cost minutes to measure
        print(f"[tunix] {spec['name']} FAILED; reporting eigen-jax alone:\n{e}", flush=True)
        return {
            "spec": {k: v for k, v in spec.items() if k != "probe_ids"},
            "eigen_jax": ours,
            "tunix": {"error": str(e)[-4000:]},
        }
    their_logits = np.asarray(theirs.pop("probe_logits"), np.float32)
    diff = float(np.abs(ours_logits - their_logits).max())
    scale = max(float(np.abs(their_logits).max()), 1.0)
    tol = 1e-3 if spec["dtype"] == "float32" else 5e-2
    if not diff <= tol * scale:
        raise RuntimeError(
            f"{spec['name']}: eigen-jax and Tunix logits differ by {diff:.3g} "
            "on the same checkpoint; the comparison would not be like for like"
        )
    return {
        "spec": {k: v for k, v in spec.items() if k != "probe_ids"},
        "logit_max_abs_diff": float(diff),
        "eigen_jax": ours,
        "tunix": theirs,
    }


def select_specs(args) -> list[dict]:
    """The --config's model specs, narrowed and amended by the command-line flags."""
    specs = CONFIGS[args.config]
    if args.models:
        wanted = args.models.split(",")
        unknown = set(wanted) - {s["name"] for s in specs}
        if unknown:
            raise SystemExit(f"unknown --models {sorted(unknown)} for --config {args.config}")
        specs = [s for s in specs if s["name"] in wanted]
    if args.repeats:
        specs = [dict(s, repeats=args.repeats) for s in specs]
    specs = [dict(s, steps_per_sync=args.steps_per_sync) for s in specs]
    if args.attention_impls:
        impls = args.attention_impls.split(",")
        unknown = set(impls) - set(ATTENTION_IMPLS)
        if unknown:
            raise SystemExit(f"unknown --attention_impls {sorted(unknown)}")
        specs = [dict(s, attention_impls=impls) for s in specs]
    if args.override:
        extra = {}
        for item in args.override:
            field, sep, value = item.partition("=")
            if not sep or field not in {f.name for f in dataclasses.fields(models.ModelConfig)}:
                raise SystemExit(
                    f"--override {item!r}: expected FIELD=VALUE with a ModelConfig field"
                )
            extra[field] = json.loads(value)
        specs = [dict(s, overrides={**s["overrides"], **extra}) for s in specs]
    return specs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    parser.add_argument("--models", default=None, help="comma list of names in the config")
    parser.add_argument("--metrics", default="grpo,decode,train")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument(
        "--steps_per_sync",
        type=int,
        default=None,
        help="eigen-jax decode steps per host sync in the decode workload "
        "(default: generate's, the whole budget in one device loop)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="eigen-jax ModelConfig field (VALUE as JSON), e.g. attention_block=0 "
        "for an A/B of one eigen-jax choice; repeatable",
    )
    parser.add_argument(
        "--attention_impls",
        default=None,
        help="comma list of attention_impl values (e.g. cudnn,xla): one "
        "eigen-jax train measurement each, same weights",
    )
    parser.add_argument("--venv", default=None, help="Tunix venv (default: make_venv.sh's)")
    parser.add_argument(
        "--no_tunix",
        action="store_true",
        help="eigen-jax alone: no Tunix venv is made or used, no checkpoint",
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results", "compare_tunix.json"))
    args = parser.parse_args()

    specs = select_specs(args)
    metrics = args.metrics.split(",")
    start = time.time()
    venv = None if args.no_tunix else ensure_venv(args.venv)
    load_before = os.getloadavg()
    dtypes = {s["dtype"] for s in specs}
    peaks = {d: matmul_peak_flops(jnp.dtype(d)) for d in dtypes}
    results = []
    for spec in specs:
        with tempfile.TemporaryDirectory() as workdir:
            results.append(bench_model(spec, metrics, venv, peaks[spec["dtype"]], workdir))
    report(args.config, results, peaks, load_before, start, args.out)


if __name__ == "__main__":
    main()
