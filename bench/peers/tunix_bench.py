"""Tunix side of `bench/compare_tunix.py`: runs INSIDE the Tunix venv (`make_venv.sh`).

Why a separate process: Tunix pins packages (safetensors<0.8) that the eigen-jax venv cannot
share, so the two stacks meet only through files: the HF Qwen3 checkpoint eigen-jax wrote (loaded
here with Tunix's own safetensors loader) and a JSON spec in, one JSON of measurements out. This
file imports nothing of eigen-jax.

Measured, each with the spec's shapes (median of `repeats` after warm-up; compile separately):
  logits   the model's logits on the spec's probe ids (compare_tunix checks weight parity with them)
  decode   `tunix.generate.sampler.Sampler` tokens/s; decode-only rate from two generation lengths
  train    `tunix.sft.peft_trainer.PeftTrainer` full-parameter step, tokens/s
  grpo     `tunix.rl.grpo.grpo_learner.GRPOLearner` global step (vanilla rollout + update)

    python bench/peers/tunix_bench.py --spec spec.json --out tunix.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


class IdTokenizer:
    """Text is space-separated token ids: the benchmark feeds exact ids through Tunix's
    string-level sampler API without a real vocabulary (no BOS; pad 0; eos never sampled)."""

    def __init__(self, eos_id: int):
        self._eos = eos_id

    def encode(self, text, **_):
        if isinstance(text, np.ndarray):  # the GRPO rollout hands over numpy string scalars
            text = str(text.item())
        return [int(t) for t in text.split()]

    def decode(self, ids, **_):
        return " ".join(str(int(i)) for i in ids)

    def bos_id(self):
        return None

    def eos_id(self):
        return self._eos

    def pad_id(self):
        return 0


def tunix_config(hf: dict, dtype):
    from tunix.models.qwen3 import model as qwen3

    if hf.get("model_type") != "qwen3":
        raise ValueError(f"tunix_bench supports Qwen3 checkpoints, got {hf.get('model_type')!r}")
    return qwen3.ModelConfig(
        num_layers=hf["num_hidden_layers"],
        vocab_size=hf["vocab_size"],
        embed_dim=hf["hidden_size"],
        hidden_dim=hf["intermediate_size"],
        num_heads=hf["num_attention_heads"],
        head_dim=hf["head_dim"],
        num_kv_heads=hf["num_key_value_heads"],
        rope_theta=int(hf["rope_theta"]),
        norm_eps=hf["rms_norm_eps"],
        use_tied_embedding=hf.get("tie_word_embeddings", False),
        dtype=dtype,
        param_dtype=jnp.float32,
    )


def load_model(ckpt: str, dtype, mesh):
    from tunix.models.qwen3 import params as qwen3_params

    with open(f"{ckpt}/config.json") as f:
        hf = json.load(f)
    cfg = tunix_config(hf, dtype)
    return qwen3_params.create_model_from_safe_tensors(ckpt, cfg, mesh), cfg


def causal_inputs(tokens):
    """(positions, attention_mask) for right-padded [B, T] ids with pad 0, as Tunix's examples
    build them for training and scoring."""
    from tunix.generate import utils

    mask = tokens != 0
    return utils.build_positions_from_mask(mask), utils.make_causal_attn_mask(mask, tokens.shape[1])


def probe_logits(model, probe_ids) -> list:
    ids = jnp.asarray(probe_ids, jnp.int32)
    positions, attn = causal_inputs(ids)
    logits, _ = model(ids, positions, None, attn)
    return np.asarray(logits, np.float32).tolist()


def prompts_text(spec, vocab) -> list[str]:
    rng = np.random.RandomState(spec["seed"])
    return [
        " ".join(map(str, rng.randint(3, vocab, spec["prompt_len"]))) for _ in range(spec["batch"])
    ]


def bench_decode(model, cfg, spec) -> dict:
    from tunix.generate import sampler as sampler_lib

    tok = IdTokenizer(cfg.vocab_size)  # an id the model can never sample: fixed-length decoding
    cache = sampler_lib.CacheConfig(
        cache_size=spec["max_len"],
        num_layers=cfg.num_layers,
        num_kv_heads=cfg.num_kv_heads,
        head_dim=cfg.head_dim,
    )
    sampler = sampler_lib.Sampler(model, tok, cache)
    prompts = prompts_text(spec, cfg.vocab_size)
    out = {}
    for n in (spec["decode_short"], spec["decode_long"]):
        call = lambda: sampler(
            prompts,
            max_generation_steps=n,  # noqa: E731
            max_prompt_length=spec["prompt_len"],
            temperature=1.0,
            top_p=1.0,
            seed=0,
            return_logprobs=True,
        )
        start = time.perf_counter()
        res = call()
        compile_s = time.perf_counter() - start
        assert all(len(t) == n for t in res.tokens), [len(t) for t in res.tokens]
        times = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        out[n] = {"compile_s": compile_s, "s": statistics.median(times), "all_s": times}
    short, long_ = out[spec["decode_short"]], out[spec["decode_long"]]
    extra = spec["batch"] * (spec["decode_long"] - spec["decode_short"])
    return {
        "generate_tok_s": spec["batch"] * spec["decode_long"] / long_["s"],
        "decode_tok_s": extra / max(long_["s"] - short["s"], 1e-9),
        "compile_s": short["compile_s"],
        "runs": out,
    }


class TimedIterator:
    """Yields `items`, stamping the time of each pull: in steady state the gap between pulls is
    one trainer step (Tunix's loops pull the next batch once the previous step is dispatched)."""

    def __init__(self, items):
        self.items, self.stamps = list(items), []

    def __iter__(self):
        for item in self.items:
            self.stamps.append(time.perf_counter())
            yield item


def step_times(stamps, end, warmup):
    """Per-step seconds after `warmup` steps (pull gaps, last step closed by `end`)."""
    edges = stamps + [end]
    return [b - a for a, b in zip(edges[:-1], edges[1:])][warmup:]


def bench_train(model, spec) -> dict:
    from tunix.sft import peft_trainer

    rng = np.random.RandomState(spec["seed"] + 1)
    b, t = spec["train_batch"], spec["train_seq"]
    warmup, steps = 2, spec["repeats"] + 1
    batches = [
        peft_trainer.TrainingInput(
            input_tokens=jnp.asarray(rng.randint(3, model.config.vocab_size, (b, t)), jnp.int32),
            input_mask=jnp.ones((b, t), jnp.bool_),
        )
        for _ in range(warmup + steps)
    ]

    def model_input(x):
        positions, attn = causal_inputs(x.input_tokens)
        return {
            "input_tokens": x.input_tokens,
            "input_mask": x.input_mask,
            "positions": positions,
            "attention_mask": attn,
        }

    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(1e-5, b1=0.9, b2=0.95, weight_decay=0.01)
    )
    config = peft_trainer.TrainingConfig(
        eval_every_n_steps=10**9, max_steps=warmup + steps, pbar_description=None
    )
    trainer = peft_trainer.PeftTrainer(model, tx, config).with_gen_model_input_fn(model_input)
    it = TimedIterator(batches)
    trainer.train(it)
    jax.block_until_ready(nnx.state(model))
    times = step_times(it.stamps, time.perf_counter(), warmup)
    step_s = statistics.median(times)
    return {
        "step_s": step_s,
        "all_s": times,
        "tokens_per_s": b * t / step_s,
        "compile_s": it.stamps[1] - it.stamps[0],
    }


def bench_train_lora(model, spec) -> dict:
    """`bench_train` with qwix LoRA (Tunix's own) on the attention projections and MLPs; the
    PEFT trainer then trains only the adapters."""
    import qwix

    rank = spec["lora_rank"]
    provider = qwix.LoraProvider(
        module_path=".*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
        rank=rank,
        alpha=2.0 * rank,
    )
    model = qwix.apply_lora_to_model(model, provider, **model.get_model_input())
    return bench_train(model, spec)


def reward_fn(prompts, completions, **_):
    """1 if more than half the completion's ids are even, else 0: binary like a checker, yet it
    varies within a group, so the update does real work (same rule on the eigen-jax side)."""
    out = []
    for text in completions:
        ids = [int(t) for t in text.split()]
        out.append(float(2 * sum(i % 2 == 0 for i in ids) > len(ids)))
    return out


def bench_grpo(model, cfg, spec, mesh) -> dict:
    from tunix.rl import rl_cluster as rl_cluster_lib
    from tunix.rl.grpo import grpo_learner
    from tunix.rl.rollout import base_rollout

    g, n_prompts = spec["group_size"], spec["grpo_prompts"]
    warmup, steps = 2, spec["repeats"] + 1
    rng = np.random.RandomState(spec["seed"] + 2)
    # An array, not a list: Tunix repeats array leaves per sample (a list's strings would each
    # become a [G] array).
    data = [
        {
            "prompts": np.array(
                [
                    " ".join(map(str, rng.randint(3, cfg.vocab_size, spec["prompt_len"])))
                    for _ in range(n_prompts)
                ]
            )
        }
        for _ in range(warmup + steps)
    ]
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(1e-5, b1=0.9, b2=0.95, weight_decay=0.01)
    )
    training = rl_cluster_lib.RLTrainingConfig(
        actor_optimizer=tx,
        eval_every_n_steps=10**9,
        max_steps=warmup + steps,
        pbar_description=None,
    )
    rollout = base_rollout.RolloutConfig(
        max_tokens_to_generate=spec["grpo_new_tokens"],
        max_prompt_length=spec["prompt_len"],
        kv_cache_size=spec["max_len"],
        temperature=1.0,
        top_p=1.0,
        top_k=None,
        eos_tokens=[cfg.vocab_size],
    )
    cluster_cfg = rl_cluster_lib.ClusterConfig(
        role_to_mesh={
            rl_cluster_lib.Role.ACTOR: mesh,
            rl_cluster_lib.Role.REFERENCE: mesh,
            rl_cluster_lib.Role.ROLLOUT: mesh,
        },
        rollout_engine="vanilla",
        offload_to_cpu=False,
        training_config=training,
        rollout_config=rollout,
    )
    cluster = rl_cluster_lib.RLCluster(
        actor=model,
        reference=None,
        tokenizer=IdTokenizer(cfg.vocab_size),
        cluster_config=cluster_cfg,
    )
    algo = grpo_learner.GRPOConfig(
        num_generations=g,
        num_iterations=1,
        beta=0.0,
        epsilon=spec["clip_eps"],
        loss_agg_mode="token-mean",
    )
    learner = grpo_learner.GRPOLearner(cluster, algo, reward_fns=[reward_fn])
    it = TimedIterator(data)
    learner.train(it)
    jax.block_until_ready(nnx.state(cluster.actor_trainer.model))
    times = step_times(it.stamps, time.perf_counter(), warmup)
    step_s = statistics.median(times)
    if cluster.actor_trainer.train_steps != warmup + steps:
        raise RuntimeError(
            f"Tunix ran {cluster.actor_trainer.train_steps} updates, expected {warmup + steps}"
        )
    return {
        "step_s": step_s,
        "all_s": times,
        "compile_s": it.stamps[1] - it.stamps[0],
        "sequences": g * n_prompts,
        "new_tokens_per_s": g * n_prompts * spec["grpo_new_tokens"] / step_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON written by compare_tunix.py")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.WARNING)
    with open(args.spec) as f:
        spec = json.load(f)
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[spec["dtype"]]
    import tunix

    mesh = jax.make_mesh(
        (1, 1),
        ("fsdp", "tp"),
        devices=jax.devices()[:1],
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
    )
    result = {
        "tunix": getattr(tunix, "__version__", "?"),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
    }
    with jax.set_mesh(mesh):
        model, cfg = load_model(spec["checkpoint"], dtype, mesh)
        result["probe_logits"] = probe_logits(model, spec["probe_ids"])
        for name in spec["metrics"]:
            print(f"[tunix] {name} ...", flush=True)
            if name == "decode":
                result["decode"] = bench_decode(model, cfg, spec)
            elif name == "train":
                result["train"] = bench_train(load_model(spec["checkpoint"], dtype, mesh)[0], spec)
            elif name == "train_lora":
                result["train_lora"] = bench_train_lora(
                    load_model(spec["checkpoint"], dtype, mesh)[0], spec
                )
            elif name == "grpo":
                result["grpo"] = bench_grpo(
                    load_model(spec["checkpoint"], dtype, mesh)[0], cfg, spec, mesh
                )
            else:
                raise ValueError(f"unknown metric {name!r}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
