"""The experiment pipeline that `launch/train.py` runs: a gin-chosen list of stages.

Each stage takes the context (artifacts of earlier stages: data_dir, tokenizer_dir, agent/user HF
dirs, ...) and returns what it adds. Every stage is resumable: it skips work whose output exists
and resumes from its own checkpoints. The timings land in `WORKDIR/pipeline.json`, with the part
of each stage JAX spent tracing and compiling (`compile_s`).

Multi-process runs (a pod slice): every process runs every stage. Stages that write shared files
(data, tokenizer, report, `pipeline.json`) run on process 0 while the others wait and then read
its result (`multihost.primary_first`); training, RL and evaluation split their work by process
inside. The workdir may be a URL (`gs://bucket/run`): paths go through `etils.epath`.

This module lives in launch/ because it joins both halves: data_agents (dataset generation,
reference backend) and eigen_jax (training, RL, evaluation).
"""
from __future__ import annotations

import json
import time
from eigen_jax import multihost, paths
from typing import Any, Callable, Sequence

import gin
from absl import logging

Stage = Callable[[dict[str, Any]], dict[str, Any]]


@gin.configurable(denylist=["workdir"])
def run_pipeline(workdir: str, stages: Sequence[Stage] = gin.REQUIRED) -> dict[str, Any]:
    from eigen_jax.compile_time import CompileTimer

    ctx: dict[str, Any] = {"workdir": str(paths.resolve(workdir)), "timings": {},
                           "compile_s": {}}
    if multihost.is_primary():
        paths.resolve(ctx["workdir"]).mkdir(parents=True, exist_ok=True)
    for stage in stages:
        name = getattr(stage, "__name__", None) or str(stage)
        label = name
        t0 = time.perf_counter()
        logging.info("=== stage %s", label)
        with CompileTimer() as compile_timer:
            out = stage(ctx) or {}
        label = out.pop("stage_name", label)
        ctx.update(out)
        ctx["timings"][label] = round(time.perf_counter() - t0, 2)
        ctx["compile_s"][label] = round(compile_timer.total_s, 2)
        logging.info("=== stage %s done in %.1fs (%.1fs tracing/compiling %d programs)", label,
                     ctx["timings"][label], compile_timer.total_s, compile_timer.compiles)
        if multihost.is_primary():
            (paths.resolve(ctx["workdir"]) / "pipeline.json").write_text(json.dumps(
                {k: v for k, v in ctx.items() if _jsonable(v)}, indent=1, default=str))
    return ctx


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v, default=str)
        return True
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- data
@gin.configurable
def reference_data_stage(ctx: dict[str, Any], domain: str = "outfitter",
                         num_train: int | None = None, num_test: int | None = None,
                         domain_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Dialogues from the domain's reference solver → journal → TFDS (offline); written by
    process 0, read by all."""
    return multihost.primary_first("data", lambda: _reference_data(
        ctx, domain, num_train, num_test, domain_kwargs))


def _reference_data(ctx, domain, num_train, num_test, domain_kwargs) -> dict[str, Any]:
    from data_agents.reference_backend import generate_reference
    from data_agents.tfds import build_dataset

    root = paths.resolve(ctx["workdir"]) / "data"
    counts = generate_reference(domain, root / "journals" / "reference.jsonl",
                                {"train": num_train, "test": num_test}, **(domain_kwargs or {}))
    builder = build_dataset(root / "journals", root / "tfds")
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    logging.info("dataset: %s (journal counts %s)", splits, counts)
    return {"data_dir": str(root / "tfds"), "journal_dir": str(root / "journals"),
            "dataset_splits": splits, "domain": domain,
            "domain_kwargs": dict(domain_kwargs or {}), "stage_name": "data"}


@gin.configurable
def external_data_stage(ctx: dict[str, Any], data_dir: str = gin.REQUIRED,
                        domain: str = "outfitter",
                        domain_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train on an already published `eigen_dialogues` dataset (e.g. `generate_data.py
    --publish` output), evaluating and running RL on `domain`."""
    if not paths.resolve(data_dir).joinpath("eigen_dialogues").is_dir():
        raise FileNotFoundError(f"no eigen_dialogues TFDS dataset under {data_dir}")
    return {"data_dir": data_dir, "domain": domain, "domain_kwargs": dict(domain_kwargs or {}),
            "stage_name": "data"}


@gin.configurable
def tokenizer_stage(ctx: dict[str, Any], vocab_size: int = 1024, tokenizer_dir: str | None = None,
                    split_digits: bool = False, isolate_spaces: bool = False) -> dict[str, Any]:
    """Use `tokenizer_dir` (e.g. a real model's) or train a small BPE on the journals' text
    (process 0 trains it, the others read it)."""
    if tokenizer_dir:
        return {"tokenizer_dir": tokenizer_dir, "stage_name": "tokenizer"}
    return multihost.primary_first("tokenizer", lambda: _train_tokenizer(
        ctx, vocab_size, split_digits, isolate_spaces))


def _train_tokenizer(ctx, vocab_size, split_digits, isolate_spaces) -> dict[str, Any]:
    out = paths.resolve(ctx["workdir"]) / "tokenizer"
    if not (out / "tokenizer.json").exists():
        from data_agents.journal import iter_records
        from eigen_jax.chat import views
        from eigen_jax.chat.tiny_tokenizer import train_tiny_tokenizer

        def corpus():
            for path in sorted(paths.resolve(ctx["journal_dir"]).glob("*.jsonl")):
                for r in iter_records(path):
                    if r.split != "train":
                        continue
                    yield r.policy
                    yield json.dumps(r.tools)
                    yield views.user_system_prompt(
                        r.task, views.user_guidelines(r.domain, r.user_tools))
                    for m in r.messages:
                        yield m["content"]
                        for c in m.get("tool_calls", []):
                            yield json.dumps({"name": c["name"], "arguments": c["arguments"]})

        with paths.local_staging(out, "tokenizer") as local:
            train_tiny_tokenizer(corpus(), vocab_size, local, split_digits=split_digits,
                                 isolate_spaces=isolate_spaces)
    return {"tokenizer_dir": str(out), "stage_name": "tokenizer"}


# --------------------------------------------------------------------------- SFT
@gin.configurable
def sft_stage(ctx: dict[str, Any], objective: str = "agent", name: str | None = None,
              init_from: str | None = None,
              run: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Agent SFT or user-simulator SFT (`objective`), via `eigen_jax.train.sft.run_sft`.

    `init_from="agent"` starts from this pipeline's agent-SFT checkpoint instead of `init_model`'s
    (in the paper both models start from one pretrained LLM that already copies names and ids from
    its context; a tiny model trained from scratch learns that only late in agent SFT, so the user
    simulator inherits it from there: bench/NOTES.md, "Copying arguments").
    """
    from eigen_jax.train.sft import run_sft

    name = name or f"sft_{objective}"
    kwargs = {}
    if init_from is not None:
        key = f"{init_from}_hf_dir"
        if not ctx.get(key):
            raise ValueError(f"sft_stage(init_from={init_from!r}) needs the {init_from}-SFT stage "
                             f"before it (no {key} in the pipeline context)")
        kwargs["init_hf_dir"] = ctx[key]
    result = (run or run_sft)(workdir=str(paths.resolve(ctx["workdir"]) / name),
                              data_dir=ctx["data_dir"], tokenizer_dir=ctx["tokenizer_dir"],
                              objective=objective, **kwargs)
    return {f"{objective}_hf_dir": result.get("hf_dir"), f"{name}_result": result,
            "stage_name": name}


# --------------------------------------------------------------------------- GRPO
@gin.configurable
def grpo_stage(ctx: dict[str, Any], user: str = "model", name: str = "grpo") -> dict[str, Any]:
    """GRPO from the agent-SFT checkpoint; `user`: "model" (the user-SFT checkpoint, frozen — the
    paper's recipe), "reference" (the domain's scripted user) or "untrained" (a random-init user
    model of the same shape, for the ablation)."""
    from eigen_jax.rl.grpo import run_grpo

    kind, user_dir = user, None
    if user == "model":
        user_dir = ctx.get("user_hf_dir")
        if not user_dir:
            raise ValueError("grpo_stage(user='model') needs a user-SFT stage before it")
    elif user == "untrained":
        kind, user_dir = "model", random_init_checkpoint(ctx, "random_user")
    result = run_grpo(workdir=str(paths.resolve(ctx["workdir"]) / name),
                      policy_hf_dir=ctx["agent_hf_dir"], tokenizer_dir=ctx["tokenizer_dir"],
                      domain=_domain(ctx), user=kind, user_hf_dir=user_dir)
    return {"grpo_hf_dir": result.get("hf_dir"), f"{name}_result": result, "stage_name": name}


def _domain(ctx: dict[str, Any]):
    from data_agents.domains import load

    return load(ctx.get("domain", "outfitter"), **ctx.get("domain_kwargs", {}))


def random_init_checkpoint(ctx: dict[str, Any], name: str = "random_init") -> str:
    """The untrained starting point (same architecture and seed as SFT) as an HF checkpoint."""
    out = paths.resolve(ctx["workdir"]) / name / "hf"
    if not (out / "config.json").exists():  # the same answer on every process
        from eigen_jax import sharding as shd
        from eigen_jax.chat.template import ChatTemplate
        from eigen_jax.train.model_init import init_model
        from eigen_jax.train.sft import export_pretrained

        vocab = len(ChatTemplate.from_pretrained(ctx["tokenizer_dir"]).tokenizer)
        model, config = init_model(shd.make_mesh((1, -1, 1)), vocab_size=vocab)
        export_pretrained(model, config, out, ctx["tokenizer_dir"])
    return str(out)


# --------------------------------------------------------------------------- evaluation
@gin.configurable
def eval_stage(ctx: dict[str, Any], checkpoints: Sequence[str] = ("random", "sft", "grpo"),
               user: str = "reference") -> dict[str, Any]:
    """pass^k on held-out tasks for each named checkpoint: random init, agent SFT, GRPO."""
    from eigen_jax.eval.evaluate import evaluate_checkpoint
    from eigen_jax.rl.user_sim import make_user_simulator

    dirs = {"random": lambda: random_init_checkpoint(ctx), "sft": lambda: ctx["agent_hf_dir"],
            "grpo": lambda: ctx["grpo_hf_dir"]}
    results = {}
    for name in checkpoints:
        if name not in dirs:
            raise ValueError(f"unknown checkpoint {name!r}; expected one of {sorted(dirs)}")
        out_dir = paths.resolve(ctx["workdir"]) / "eval" / name
        sim = make_user_simulator(user, hf_dir=ctx.get("user_hf_dir"))
        results[name] = evaluate_checkpoint(
            dirs[name](), str(out_dir), domain=ctx.get("domain", "outfitter"),
            domain_kwargs=ctx.get("domain_kwargs"), user=sim, name=name)
        results[name].pop("tasks", None)  # per-trial detail stays in results.json
    return {"eval": results, "stage_name": "eval"}


# --------------------------------------------------------------------------- report
@gin.configurable
def report_stage(ctx: dict[str, Any]) -> dict[str, Any]:
    """WORKDIR/report.json + report.md: pass^k per stage, reward curve PNG, time per stage
    (written by process 0)."""
    return multihost.primary_first("report", lambda: _write_report(ctx))


def _write_report(ctx: dict[str, Any]) -> dict[str, Any]:
    from eigen_jax.eval.results import format_table, plot_pass_k

    wd = paths.resolve(ctx["workdir"])
    evals = ctx.get("eval", {})
    compile_s = ctx.get("compile_s", {})
    report: dict[str, Any] = {"timings_s": dict(ctx["timings"]), "compile_s": dict(compile_s),
                              "eval": evals,
                              "dataset_splits": ctx.get("dataset_splits")}
    for key in ("sft_agent_result", "sft_user_result", "grpo_result"):
        if key in ctx:
            report[key.removesuffix("_result")] = {
                k: v for k, v in ctx[key].items() if k != "hf_dir"}
    if evals:
        plot_pass_k(evals, wd / "pass_k.png")
    report["comparisons"] = _compare_consecutive(wd, list(evals))
    curve = (ctx.get("grpo_result") or {}).get("reward_curve")
    if curve:
        _plot_curve(curve, wd / "reward_curve.png")
    (wd / "report.json").write_text(json.dumps(report, indent=1, default=str))
    lines = ["# eigen-jax run report", "", f"workdir: `{wd}`", "", "## pass^k on held-out tasks",
             "", "```", format_table(evals) if evals else "(no evaluation stage)", "```", ""]
    for pair in report["comparisons"]:
        lines += [f"### {pair['candidate']} vs {pair['baseline']} (paired bootstrap over tasks)",
                  "", pair["table"], ""]
    lines += ["## Time per stage (s)", "", "| stage | seconds | of which JAX compiling |",
              "|---|---|---|"]
    lines += [f"| {k} | {v} | {compile_s.get(k, '')} |" for k, v in ctx["timings"].items()]
    if curve:
        lines += ["", "## GRPO reward curve", "", "![reward curve](reward_curve.png)"]
    (wd / "report.md").write_text("\n".join(lines) + "\n")
    logging.info("report:\n%s", "\n".join(lines))
    return {"report": str(wd / "report.md"), "stage_name": "report"}


def _compare_consecutive(wd, names: list[str]) -> list[dict[str, Any]]:
    """Each evaluated stage against the one before it (random → sft → grpo), paired by task."""
    from eigen_jax.eval.compare import compare_table, format_comparison

    out = []
    for base, cand in zip(names, names[1:]):
        a, b = (json.loads((wd / "eval" / n / "results.json").read_text()) for n in (base, cand))
        rows = compare_table(a, b)
        out.append({"baseline": base, "candidate": cand, "rows": rows,
                    "table": format_comparison(rows, base, cand)})
    return out


def _plot_curve(curve, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, rewards = zip(*curve)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(steps, rewards, marker=".")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean rollout reward")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with path.open("wb") as f:  # any epath scheme
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
