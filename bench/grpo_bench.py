"""GRPO step time split into rollout / reward / update, and tokens/s, for a tiny and a ~25M model.

Usage: python bench/grpo_bench.py [--presets tiny-qwen3,bench-25m] [--steps 2] [--tasks 2]
                                  [--group_size 8] [--max_new_tokens 64] [--out ...json]

Each configuration: the outfitter domain with its reference user, a randomly initialised policy
(random weights rarely emit an end-of-turn id, so most episodes are one policy turn cut off at
`max_new_tokens`: this measures decode + learner throughput, not dialogue dynamics), group size 8,
dynamic filtering off (random policies give all-zero groups). One warm-up step compiles; the
next `--steps` are timed. Also reports the learner-token saving of the trajectory layout over the
per-turn layout, measured on the domain's reference dialogues cut to their first 10 agent turns.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np
from flax import nnx


def layout_saving(chat, domain, num_tasks: int, turns: int = 10) -> dict[str, float]:
    """Learner tokens of both layouts on reference dialogues with >= `turns` agent turns."""
    from data_agents.domains.outfitter.dialogue import run_reference_dialogue
    from eigen_jax.chat import views
    from eigen_jax.chat.conversation import render_dialogue
    from eigen_jax.rl.episode import Episode
    from eigen_jax.rl.train_batch import layout_token_count

    system, tools = views.agent_prompt(domain.policy, domain.make_env().tools_schema("assistant"))
    eps = []
    for task in domain.tasks("train")[:num_tasks]:
        msgs = run_reference_dialogue(domain, task)["messages"]
        conv = render_dialogue(chat, views.agent_messages(msgs, system), tools)
        mask = conv.assistant_mask()
        spans = []
        for t in conv.turns:
            if t.role == "assistant":
                idx = np.where(mask[t.start : t.end])[0]
                spans.append((t.start + int(idx[0]), t.start + int(idx[-1]) + 1))
        if len(spans) < turns:
            continue
        spans = spans[:turns]
        m = np.zeros(len(conv), bool)
        for s, e in spans:
            m[s:e] = True
        eps.append(
            Episode(task.id, 0, 0, conv.tokens, m, np.zeros(len(m)), spans, 0.0, "user_stop", [])
        )
    if not eps:
        return {"dialogues": 0}
    traj, per_turn = (layout_token_count(eps, lay) for lay in ("trajectory", "per_turn"))
    return {
        "dialogues": len(eps),
        "trajectory_tokens": traj,
        "per_turn_tokens": per_turn,
        "per_turn_over_trajectory": per_turn / traj,
    }


def bench_one(preset, chat, domain, args) -> dict[str, float]:
    from eigen_jax import models
    from eigen_jax import sharding as shd
    from eigen_jax.rl.config import GRPOConfig
    from eigen_jax.rl.grpo import TaskStream, collect_groups
    from eigen_jax.rl.learner import GRPOLearner
    from eigen_jax.rl.rollout import RolloutConfig, RolloutWorker
    from eigen_jax.rl.user_sim import ReferenceUserSimulator
    from eigen_jax.sampling import Engine

    mesh = shd.make_mesh((1, -1, 1))
    config = models.get_config(preset, vocab_size=len(chat.tokenizer), max_position_embeddings=8192)
    model = shd.shard_model(models.Transformer(config, rngs=nnx.Rngs(0)), mesh)
    n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    engine = Engine(
        model,
        args.slots,
        args.max_len,
        mesh,
        max_prefill_len=args.max_len,
        min_prefill_len=args.max_len,
    )
    state, learner = GRPOLearner.create(
        model,
        config,
        mesh,
        GRPOConfig(learning_rate=1e-5, share_prefix=False),
        num_steps=args.steps + 1,
        max_len=args.max_len * 2,
        temperature=1.0,
    )
    worker = RolloutWorker(
        engine,
        chat,
        domain,
        ReferenceUserSimulator(),
        RolloutConfig(max_new_tokens=args.max_new_tokens),
    )
    stream = TaskStream(domain.tasks("train"), 0)
    rows = []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        groups, stats = collect_groups(
            worker, stream, args.tasks, args.group_size, dynamic_filtering=False, seed=step
        )
        t_roll = time.perf_counter() - t0
        t1 = time.perf_counter()
        state, m = learner.update(state, groups)
        learner.sync_sampler(engine, state)
        jax.block_until_ready(state.params)
        t_upd = time.perf_counter() - t1
        gen = sum(e.num_policy_tokens for g in groups for e in g)
        if step > 0:  # step 0 compiles
            rows.append(
                {
                    "rollout_s": t_roll - stats["reward_s"],
                    "reward_s": stats["reward_s"],
                    "user_s": stats["user_s"],
                    "update_s": t_upd,
                    "step_s": t_roll + t_upd,
                    "generated_tokens": gen,
                    "train_tokens": m["train_tokens"],
                    "episodes": stats["episodes"],
                    "episode_turns": stats["episode_turns"],
                }
            )
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["rollout_tokens_per_s"] = out["generated_tokens"] / out["rollout_s"]
    out["update_tokens_per_s"] = out["train_tokens"] / out["update_s"]
    out["params"] = float(n_params)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="tiny-qwen3,bench-25m")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--group_size", type=int, default=8)
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--max_len", type=int, default=1024)
    p.add_argument("--slots", type=int, default=16)
    p.add_argument("--out", default="bench/results/grpo_bench.json")
    args = p.parse_args()

    import gin

    from data_agents import domains
    from eigen_jax.chat import views  # noqa: F401  (registers agent_prompt with gin)
    from eigen_jax.chat.template import ChatTemplate
    from eigen_jax.chat.tiny_tokenizer import train_tiny_tokenizer

    gin.bind_parameter("agent_prompt.mode", "compact")
    domain = domains.load("outfitter", n_train=32, n_test=4)
    texts = [domain.policy] + [t.model_dump_json() for t in domain.tasks("train")]
    results = {"args": vars(args)}
    for preset in args.presets.split(","):
        vocab = 512 if preset.startswith("tiny") else 32000
        with tempfile.TemporaryDirectory() as d:
            train_tiny_tokenizer(texts, vocab_size=vocab, output_dir=d)
            chat = ChatTemplate.from_pretrained(d)
        results[preset] = bench_one(preset, chat, domain, args)
    gin.clear_config()
    gin.bind_parameter("agent_prompt.mode", "full")
    results["layout_saving_10_turns_full_prompt"] = layout_saving(chat, domain, 32)
    gin.bind_parameter("agent_prompt.mode", "compact")
    results["layout_saving_10_turns_compact_prompt"] = layout_saving(chat, domain, 32)

    cols = (
        "params",
        "step_s",
        "rollout_s",
        "reward_s",
        "update_s",
        "generated_tokens",
        "rollout_tokens_per_s",
        "train_tokens",
        "update_tokens_per_s",
    )
    print(f"{'preset':12s} " + " ".join(f"{c:>20s}" for c in cols))
    for preset in args.presets.split(","):
        r = results[preset]
        print(f"{preset:12s} " + " ".join(f"{r[c]:20.4g}" for c in cols))
    for k in ("layout_saving_10_turns_full_prompt", "layout_saving_10_turns_compact_prompt"):
        print(k, results[k])
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
