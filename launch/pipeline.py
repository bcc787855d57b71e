"""The experiment pipeline that `launch/train.py` runs: a gin-chosen list of stages.

Each stage reads what earlier stages produced from the typed `RunContext` (data, tokenizer,
checkpoints, results), adds its own, and returns its label. Every stage is resumable: it skips
work whose output exists and resumes from its own checkpoints. The context, with the time of each
stage and the part JAX spent tracing and compiling (`compile_s`), is `WORKDIR/pipeline.json`.

Multi-process runs (a pod slice): every process runs every stage. Stages that write shared files
(data, tokenizer, report, `pipeline.json`) run on process 0 while the others wait and then read
its result (`multihost.primary_first`); training, RL and evaluation split their work by process
inside. The workdir may be a URL (`gs://bucket/run`): paths go through `etils.epath`.

This module lives in launch/ because it joins both halves: data_agents (dataset generation,
reference backend) and eigen_jax (training, RL, evaluation).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gin
from absl import logging

from eigen_jax import multihost, paths


@dataclasses.dataclass
class RunContext:
    """What the stages have produced so far. `hf_dirs`: role (`agent`, `user`, `grpo`) → HF
    checkpoint; `results`: stage label (`sft_agent`, `grpo`, ...) → its run's result; `evals`:
    checkpoint name → pass^k summary."""

    workdir: str
    domain: str = "outfitter"
    domain_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    data_dir: str | None = None
    journal_dir: str | None = None
    dataset_splits: dict[str, int] | None = None
    tokenizer_dir: str | None = None
    hf_dirs: dict[str, str] = dataclasses.field(default_factory=dict)
    results: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    evals: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    report: str | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    compile_s: dict[str, float] = dataclasses.field(default_factory=dict)

    def path(self, *parts: str):
        return paths.resolve(self.workdir).joinpath(*parts)

    def need(self, field: str, stage: str, producer: str) -> Any:
        """`field`, or one line saying which stage must run before `stage`."""
        value = getattr(self, field)
        if not value:
            raise ValueError(
                f"{stage} needs the {producer} stage before it (no {field} in the pipeline context)"
            )
        return value

    def hf_dir(self, role: str, stage: str) -> str:
        """The `role` checkpoint, or one line naming the stage that makes it."""
        if not self.hf_dirs.get(role):
            producer = {"agent": "agent-SFT", "user": "user-SFT", "base": "base_model"}.get(
                role, role
            )
            raise ValueError(
                f"{stage} needs the {producer} stage before it (no {role} "
                "checkpoint in the pipeline context)"
            )
        return self.hf_dirs[role]


Stage = Callable[[RunContext], str | None]


@gin.configurable(denylist=["workdir", "rerun_changed"])
def run_pipeline(
    workdir: str, stages: Sequence[Stage] = gin.REQUIRED, rerun_changed: bool = False
) -> RunContext:
    """Run `stages` in order over one context. A stage that finished in an earlier run with
    other gin bindings stops the run (or, with `rerun_changed`, runs again with every stage
    after it: `launch.stage_records`)."""
    from eigen_jax.compile_time import CompileTimer
    from launch import run_info
    from launch.stage_records import StageRecords, used_configurables

    ctx = RunContext(workdir=str(paths.resolve(workdir)))
    run_info.write_start(ctx.workdir)
    records = StageRecords(ctx.workdir)
    for index, stage in enumerate(stages):
        label = getattr(stage, "__name__", None) or str(stage)
        records.check(index, rerun_changed, records.labels_after(index))
        t0 = time.perf_counter()
        logging.info("=== stage %s", label)
        with CompileTimer() as compile_timer, used_configurables() as used:
            label = stage(ctx) or label
        ctx.timings[label] = round(time.perf_counter() - t0, 2)
        ctx.compile_s[label] = round(compile_timer.total_s, 2)
        logging.info(
            "=== stage %s done in %.1fs (%.1fs tracing/compiling %d programs)",
            label,
            ctx.timings[label],
            compile_timer.total_s,
            compile_timer.compiles,
        )
        records.write(index, label, used)
        if multihost.is_primary():
            ctx.path("pipeline.json").write_text(
                json.dumps(dataclasses.asdict(ctx), indent=1, default=str)
            )
    run_info.write_end(ctx.workdir)
    return ctx


# --------------------------------------------------------------------------- data
@gin.configurable
def reference_data_stage(
    ctx: RunContext,
    domain: str = "outfitter",
    num_train: int | None = None,
    num_test: int | None = None,
    domain_kwargs: dict[str, Any] | None = None,
) -> str:
    """Dialogues from the domain's reference solver → journal → TFDS (offline); written by
    process 0, read by all."""
    splits = multihost.primary_first(
        "data", lambda: _reference_data(ctx, domain, num_train, num_test, domain_kwargs)
    )
    root = ctx.path("data")
    ctx.data_dir, ctx.journal_dir = str(root / "tfds"), str(root / "journals")
    ctx.dataset_splits, ctx.domain, ctx.domain_kwargs = splits, domain, dict(domain_kwargs or {})
    return "data"


def _reference_data(ctx, domain, num_train, num_test, domain_kwargs) -> dict[str, int]:
    from data_agents.reference_backend import generate_reference
    from data_agents.tfds import build_dataset

    root = ctx.path("data")
    with paths.local_staging(root, "data", pull=True) as local:  # journal + TFDS: local files
        counts = generate_reference(
            domain,
            Path(local) / "journals" / "reference.jsonl",
            {"train": num_train, "test": num_test},
            **(domain_kwargs or {}),
        )
        builder = build_dataset(Path(local) / "journals", Path(local) / "tfds")
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    logging.info("dataset: %s (journal counts %s)", splits, counts)
    return splits


@gin.configurable
def external_data_stage(
    ctx: RunContext,
    data_dir: str = gin.REQUIRED,
    domain: str = "outfitter",
    domain_kwargs: dict[str, Any] | None = None,
) -> str:
    """Train on an already published `eigen_dialogues` dataset (e.g. `generate_data.py
    --publish` output), evaluating and running RL on `domain`."""
    if not paths.resolve(data_dir).joinpath("eigen_dialogues").is_dir():
        raise FileNotFoundError(f"no eigen_dialogues TFDS dataset under {data_dir}")
    ctx.data_dir, ctx.domain, ctx.domain_kwargs = data_dir, domain, dict(domain_kwargs or {})
    return "data"


@gin.configurable
def tokenizer_stage(
    ctx: RunContext,
    vocab_size: int = 1024,
    tokenizer_dir: str | None = None,
    split_digits: bool = False,
    isolate_spaces: bool = False,
) -> str:
    """Use `tokenizer_dir` (e.g. a real model's) or train a small BPE on the journals' text
    (process 0 trains it, the others read it)."""
    ctx.tokenizer_dir = tokenizer_dir or multihost.primary_first(
        "tokenizer", lambda: _train_tokenizer(ctx, vocab_size, split_digits, isolate_spaces)
    )
    return "tokenizer"


def _train_tokenizer(ctx: RunContext, vocab_size, split_digits, isolate_spaces) -> str:
    out = ctx.path("tokenizer")
    if not (out / "tokenizer.json").exists():
        from data_agents.journal import iter_records
        from eigen_jax.chat import views
        from eigen_jax.chat.tiny_tokenizer import train_tiny_tokenizer

        def corpus():
            journals = ctx.need("journal_dir", "tokenizer_stage", "reference_data")
            for path in sorted(paths.resolve(journals).glob("*.jsonl")):
                for r in iter_records(path):
                    if r.split != "train":
                        continue
                    yield r.policy
                    yield json.dumps(r.tools)
                    yield views.user_system_prompt(
                        r.task, views.user_guidelines(r.domain, r.user_tools)
                    )
                    for m in r.messages:
                        yield m["content"]
                        for c in m.get("tool_calls", []):
                            yield json.dumps({"name": c["name"], "arguments": c["arguments"]})

        with paths.local_staging(out, "tokenizer") as local:
            train_tiny_tokenizer(
                corpus(),
                vocab_size,
                local,
                split_digits=split_digits,
                isolate_spaces=isolate_spaces,
            )
    return str(out)


# --------------------------------------------------------------------------- SFT
@gin.configurable
def sft_stage(
    ctx: RunContext,
    objective: str = "agent",
    name: str | None = None,
    init_from: str | None = None,
    run: Callable[..., dict[str, Any]] | None = None,
) -> str:
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
        kwargs["init_hf_dir"] = ctx.hf_dir(init_from, f"sft_stage(init_from={init_from!r})")
    result = (run or run_sft)(
        workdir=str(ctx.path(name)),
        data_dir=ctx.need("data_dir", "sft_stage", "data"),
        tokenizer_dir=ctx.need("tokenizer_dir", "sft_stage", "tokenizer"),
        objective=objective,
        **kwargs,
    )
    if result.get("hf_dir"):
        ctx.hf_dirs[objective] = result["hf_dir"]
    ctx.results[name] = result
    return name


# --------------------------------------------------------------------------- GRPO
@gin.configurable
def grpo_stage(
    ctx: RunContext,
    user: str = "model",
    name: str = "grpo",
    algorithm_overrides: dict[str, Any] | None = None,
) -> str:
    """GRPO from the agent-SFT checkpoint; `user`: "model" (the user-SFT checkpoint, frozen — the
    paper's recipe), "reference" (the domain's scripted user), "base" (the pretrained base model
    untuned: the paper's base-user ablation) or "untrained" (a random-init user model of the same
    shape).

    Ablations run several GRPO stages, each in its own gin scope for `name`/`user`
    (`@no_filter/grpo_stage`); `algorithm_overrides` are the `GRPOConfig` fields in which one
    differs from the recipe (`{'dynamic_filtering': False}`). GRPO itself runs outside the
    stage's scope, so every variant reads the recipe's `grpo/...` bindings as the plain stage
    does (gin matches a scoped binding only as a prefix of the active scope).
    """
    from eigen_jax.rl.config import GRPOConfig
    from eigen_jax.rl.grpo import run_grpo

    kind, user_dir = user, None
    if user == "model":
        user_dir = ctx.hf_dir("user", "grpo_stage(user='model')")
    elif user == "untrained":
        kind, user_dir = "model", random_init_checkpoint(ctx, "random_user")
    elif user == "base":
        kind, user_dir = "model", ctx.hf_dir("base", "grpo_stage(user='base')")
    with gin.config_scope(None):
        algorithm = GRPOConfig()
        if algorithm_overrides:
            algorithm = dataclasses.replace(algorithm, **algorithm_overrides)
        result = run_grpo(
            workdir=str(ctx.path(name)),
            policy_hf_dir=ctx.hf_dir("agent", "grpo_stage"),
            tokenizer_dir=ctx.tokenizer_dir,
            domain=_domain(ctx),
            user=kind,
            user_hf_dir=user_dir,
            algorithm=algorithm,
        )
    if result.get("hf_dir"):
        ctx.hf_dirs["grpo"] = ctx.hf_dirs[name] = result["hf_dir"]
    ctx.results[name] = result
    return name


def _domain(ctx: RunContext):
    from data_agents.domains import load

    return load(ctx.domain, **ctx.domain_kwargs)


def random_init_checkpoint(ctx: RunContext, name: str = "random_init") -> str:
    """The untrained starting point (same architecture and seed as SFT) as an HF checkpoint."""
    out = ctx.path(name, "hf")
    if not (out / "config.json").exists():  # the same answer on every process
        from eigen_jax import sharding as shd
        from eigen_jax.chat.template import ChatTemplate
        from eigen_jax.train.loop import export_pretrained
        from eigen_jax.train.model_init import init_model

        tokenizer_dir = ctx.need("tokenizer_dir", "random_init_checkpoint", "tokenizer")
        vocab = len(ChatTemplate.from_pretrained(tokenizer_dir).tokenizer)
        model, config = init_model(shd.make_mesh((1, -1, 1)), vocab_size=vocab)
        export_pretrained(model, config, out, tokenizer_dir)
    return str(out)


# --------------------------------------------------------------------------- evaluation
@gin.configurable
def eval_stage(
    ctx: RunContext, checkpoints: Sequence[str] = ("random", "sft", "grpo"), user: str = "reference"
) -> str:
    """pass^k on held-out tasks for each named checkpoint: random init, the pretrained base,
    agent SFT, GRPO."""
    from eigen_jax.eval.evaluate import evaluate_checkpoint
    from eigen_jax.rl.user_sim import make_user_simulator

    dirs = {
        "random": lambda: random_init_checkpoint(ctx),
        "base": lambda: ctx.hf_dir("base", "eval_stage"),
        "sft": lambda: ctx.hf_dir("agent", "eval_stage"),
        "grpo": lambda: ctx.hf_dir("grpo", "eval_stage"),
    }
    for name in checkpoints:
        if name not in dirs and name not in ctx.hf_dirs:
            raise ValueError(
                f"unknown checkpoint {name!r}; expected one of {sorted(dirs)} or a GRPO stage's "
                f"name (made so far: {sorted(ctx.hf_dirs)})"
            )
        sim = make_user_simulator(user, hf_dir=ctx.hf_dirs.get("user"))
        result = evaluate_checkpoint(
            dirs[name]() if name in dirs else ctx.hf_dirs[name],
            str(ctx.path("eval", name)),
            domain=ctx.domain,
            domain_kwargs=ctx.domain_kwargs,
            user=sim,
            name=name,
        )
        result.pop("tasks", None)  # per-trial detail stays in results.json
        ctx.evals[name] = result
    return "eval"


# --------------------------------------------------------------------------- report
@gin.configurable
def report_stage(ctx: RunContext, baseline: str | None = None) -> str:
    """WORKDIR/report.json + report.md (`eigen_jax.eval.report`), written by process 0;
    `baseline`: the checkpoint every other is compared with (else each with the one before)."""
    from eigen_jax.eval.report import write_report

    out = multihost.primary_first(
        "report",
        lambda: str(
            write_report(
                ctx.workdir,
                evals=ctx.evals,
                runs=ctx.results,
                timings=ctx.timings,
                compile_s=ctx.compile_s,
                dataset_splits=ctx.dataset_splits,
                baseline=baseline,
            )
        ),
    )
    logging.info("report: %s", out)
    ctx.report = out
    return "report"
