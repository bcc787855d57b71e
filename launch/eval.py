"""Evaluate an agent: pass^k per domain, results.json + table + PNG; resumable.

    python launch/eval.py --checkpoint DIR | --agent_url URL  [--user_checkpoint DIR | --user_url URL]
        --domain outfitter|tau2:airline|... --split test --num_trials 4 --workdir OUT
        [--baseline EARLIER_OUTPUT_DIR]   # Δ pass^k vs that run, paired bootstrap over tasks

Writes results.json (ours), trials.jsonl + trajectories.jsonl (resumable logs) and
tau2_results.json (tau2-bench's Results schema: `tau2 view` and tau2's metrics read it). Episode
limits: --max_steps / --max_errors or gin `RolloutConfig.*`; a trial whose agent request is
refused (context overflow: HTTP 400) is scored as failed and the run goes on.

The user simulator defaults to the domain's reference user where one exists (outfitter). Sampling
temperature, token limits etc. are gin knobs (`evaluate_checkpoint.*`, `eval/RolloutConfig.*`, `eval/SamplerConfig.*`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from launch import common  # noqa: E402

FLAGS = flags.FLAGS
common.define_infra_flags(workdir_default="")
flags.DEFINE_string("checkpoint", None, "eigen-jax / HF checkpoint dir of the agent (in-process).")
flags.DEFINE_multi_string("agent_url", None, "OpenAI-compatible endpoint(s) serving the agent.")
flags.DEFINE_string("agent_model", None, "model name to send to --agent_url.")
flags.DEFINE_string("user_checkpoint", None, "user-simulator checkpoint (in-process).")
flags.DEFINE_multi_string("user_url", None, "OpenAI-compatible endpoint(s) of the user simulator.")
flags.DEFINE_string("domain", "outfitter", "domain name (built-in or tau2:airline|retail|telecom).")
flags.DEFINE_string("split", "test", "task split.")
flags.DEFINE_integer("num_trials", 1, "trials per task (k ≤ num_trials).")
flags.DEFINE_integer("max_tasks", None, "evaluate only the first N tasks of the split.")
flags.DEFINE_alias("output_dir", "workdir")  # the earlier name of the output folder
flags.DEFINE_integer("concurrency", 32, "episodes in flight (engine slots / HTTP requests).")
flags.DEFINE_integer(
    "max_steps",
    None,
    "episode limit: messages after the system prompt "
    "(default: gin RolloutConfig.max_steps); reaching it fails the trial.",
)
flags.DEFINE_integer(
    "max_errors",
    None,
    "episode limit: tool errors allowed (default: gin "
    "RolloutConfig.max_errors); one more fails the trial.",
)
flags.DEFINE_string(
    "baseline",
    None,
    "an earlier evaluation's --workdir on the same tasks: "
    "also print Δ pass^k against it with a paired-bootstrap CI "
    "(written to OUTPUT_DIR/comparison.json).",
)


def fail(msg: str) -> None:
    sys.exit(f"eval: {msg}")


def _check_checkpoint(flag: str, path: str) -> None:
    """Fail with one line, before any compute, on a missing or corrupt HF checkpoint: the
    server's structural checks, then the config and every safetensors header are read."""
    from safetensors import SafetensorError, safe_open

    from eigen_jax.models import ModelConfig
    from eigen_jax.serve.server import CheckpointError, check_checkpoint_dir

    try:
        check_checkpoint_dir(path)
        with open(os.path.join(path, "config.json")) as f:
            ModelConfig.from_hf_config(json.load(f))
        for name in sorted(n for n in os.listdir(path) if n.endswith(".safetensors")):
            with safe_open(os.path.join(path, name), framework="numpy") as h:
                h.keys()
    except CheckpointError as e:
        fail(f"--{flag}: {e}")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        fail(f"--{flag} {path}: corrupt checkpoint: {type(e).__name__}: {e}".replace("\n", " "))


def _sampler(concurrency: int):
    """The gin-bound evaluation sampler with one cache slot per concurrent episode."""
    import dataclasses

    from eigen_jax import scopes
    from eigen_jax.sampling.config import SamplerConfig

    return dataclasses.replace(scopes.configured(SamplerConfig, scopes.EVAL), num_slots=concurrency)


def main(argv):
    del argv
    if bool(FLAGS.checkpoint) == bool(FLAGS.agent_url):
        fail("give exactly one of --checkpoint or --agent_url")
    if not FLAGS.workdir:
        fail("--workdir is required (where results.json, trials.jsonl, pass_k.png go)")
    if missing := common.missing_gin_file():
        fail(missing)
    for flag in ("checkpoint", "user_checkpoint"):
        if getattr(FLAGS, flag):
            _check_checkpoint(flag, getattr(FLAGS, flag))
    baseline = _load_baseline(FLAGS.baseline) if FLAGS.baseline else None
    common.setup_jax()
    common.parse_gin()
    from data_agents.domains import load

    try:
        domain = load(FLAGS.domain)
    except (ValueError, ImportError) as e:
        fail(str(e))
    from eigen_jax.rl.user_sim import make_user_simulator

    if FLAGS.user_checkpoint:
        user = make_user_simulator("model", hf_dir=FLAGS.user_checkpoint)
    elif FLAGS.user_url:
        user = make_user_simulator("served", urls=FLAGS.user_url)
    elif FLAGS.domain == "outfitter":
        user = make_user_simulator("reference")
    else:
        fail(f"domain {FLAGS.domain!r} has no reference user: give --user_checkpoint or --user_url")
    config = _rollout_config()
    if FLAGS.checkpoint:
        from eigen_jax.eval.evaluate import evaluate_checkpoint

        result = evaluate_checkpoint(
            FLAGS.checkpoint,
            FLAGS.workdir,
            domain=FLAGS.domain,
            split=FLAGS.split,
            num_trials=FLAGS.num_trials,
            max_tasks=FLAGS.max_tasks,
            user=user,
            sampler=_sampler(FLAGS.concurrency),
            rollout=config,
        )
        name = "checkpoint"
    else:
        result, name = _eval_served(domain, user, config), "served"
    from eigen_jax.eval.results import format_table

    print(format_table({name: result}))
    print(json.dumps({k: v for k, v in result.items() if k != "tasks"}, indent=1))
    if baseline is not None:
        _compare(baseline, result)


def _rollout_config():
    """gin's `RolloutConfig` after binding --max_steps / --max_errors into it (unset: gin's
    value), so the in-process evaluation, which builds its own, gets the same limits."""
    import gin

    from eigen_jax import scopes
    from eigen_jax.rl.rollout import RolloutConfig

    for k in ("max_steps", "max_errors"):
        if getattr(FLAGS, k) is not None:
            with gin.unlock_config():
                gin.bind_parameter(f"RolloutConfig.{k}", getattr(FLAGS, k))
    try:
        return scopes.configured(RolloutConfig, scopes.EVAL)
    except ValueError as e:
        fail(str(e))


def _load_baseline(path: str) -> dict:
    """The baseline's results.json, read before any compute so a typo fails at once."""
    file = path if path.endswith(".json") else os.path.join(path, "results.json")
    try:
        with open(file) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"--baseline {path}: no readable evaluation results ({type(e).__name__}: {e})")
    if not isinstance(res, dict) or not isinstance(res.get("tasks"), dict):
        fail(f"--baseline {path}: no readable evaluation results (no per-task trials in {file})")
    return res


def _compare(baseline: dict, result: dict) -> None:
    from eigen_jax.eval.compare import compare_table, format_comparison

    try:
        rows = compare_table(baseline, result)
    except ValueError as e:
        fail(f"--baseline: {e}")
    with open(os.path.join(FLAGS.workdir, "comparison.json"), "w") as f:
        json.dump({"baseline": FLAGS.baseline, "rows": rows}, f, indent=1)
    print(format_comparison(rows, "baseline", "this run"))


def _eval_served(domain, user, config):
    from pathlib import Path

    from data_agents.checkers import check
    from data_agents.llm import LLMError
    from eigen_jax.eval.evaluate import user_identity
    from eigen_jax.eval.results import TrialLog, summarize, write_results
    from eigen_jax.eval.served_agent import evaluate_served
    from eigen_jax.eval.tau2_results import write_tau2_results

    identity = {
        "agent_url": FLAGS.agent_url,
        "agent_model": FLAGS.agent_model,
        "domain": FLAGS.domain,
        "split": FLAGS.split,
        "user": user_identity(user),
        "limits": str(config.limits()),
    }
    log = TrialLog(Path(FLAGS.workdir) / "trials.jsonl", identity=identity)
    trajectories = TrialLog(Path(FLAGS.workdir) / "trajectories.jsonl", identity=identity)
    from eigen_jax.rl.task_source import TaskSource

    tasks = TaskSource().tasks(domain, FLAGS.split)[: FLAGS.max_tasks]  # gin: TaskSource.*
    try:
        asyncio.run(
            evaluate_served(
                FLAGS.agent_url,
                domain,
                tasks,
                user,
                FLAGS.num_trials,
                log,
                check,
                concurrency=FLAGS.concurrency,
                model=FLAGS.agent_model,
                limits=config.limits(),
                messages_log=trajectories,
            )
        )
    except LLMError as e:
        fail(f"agent server unreachable or failing: {e}")
    result = summarize(
        log,
        FLAGS.domain,
        FLAGS.num_trials,
        {"agent_url": FLAGS.agent_url, "split": FLAGS.split},
        task_ids=[t.id for t in tasks],
    )
    write_results(FLAGS.workdir, "served", result)
    write_tau2_results(
        FLAGS.workdir,
        domain,
        tasks,
        result,
        limits=config.limits(),
        agent={"llm": FLAGS.agent_model or ",".join(FLAGS.agent_url)},
        user=identity["user"],
    )
    return result


def run() -> None:
    """The `eigen-eval` console script (setup.py) and `python -m launch.eval`."""
    app.run(main)


if __name__ == "__main__":
    run()
