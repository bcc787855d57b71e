"""The experiment pipeline that `launch/train.py` runs: a gin-chosen list of stages.

Each stage takes the context (artifacts of earlier stages: data_dir, tokenizer_dir, agent/user HF
dirs, ...) and returns what it adds. Every stage is resumable: it skips work whose output exists
and resumes from its own checkpoints. The timings land in `WORKDIR/pipeline.json`.

This module lives in launch/ because it joins both halves: data_agents (dataset generation,
reference backend) and eigen_jax (training, RL, evaluation).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import gin
from absl import logging

Stage = Callable[[dict[str, Any]], dict[str, Any]]


@gin.configurable(denylist=["workdir"])
def run_pipeline(workdir: str, stages: Sequence[Stage] = gin.REQUIRED) -> dict[str, Any]:
    ctx: dict[str, Any] = {"workdir": str(Path(workdir).absolute()), "timings": {}}
    Path(ctx["workdir"]).mkdir(parents=True, exist_ok=True)
    for stage in stages:
        name = getattr(stage, "__name__", None) or str(stage)
        label = name
        t0 = time.perf_counter()
        logging.info("=== stage %s", label)
        out = stage(ctx) or {}
        label = out.pop("stage_name", label)
        ctx.update(out)
        ctx["timings"][label] = round(time.perf_counter() - t0, 2)
        logging.info("=== stage %s done in %.1fs", label, ctx["timings"][label])
        (Path(ctx["workdir"]) / "pipeline.json").write_text(json.dumps(
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
    """Dialogues from the domain's reference solver → journal → TFDS (offline)."""
    from data_agents.reference_backend import generate_reference
    from data_agents.tfds import build_dataset

    root = Path(ctx["workdir"]) / "data"
    counts = generate_reference(domain, root / "journals" / "reference.jsonl",
                                {"train": num_train, "test": num_test}, **(domain_kwargs or {}))
    builder = build_dataset(root / "journals", root / "tfds")
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    logging.info("dataset: %s (journal counts %s)", splits, counts)
    return {"data_dir": str(root / "tfds"), "journal_dir": str(root / "journals"),
            "dataset_splits": splits, "domain": domain,
            "domain_kwargs": dict(domain_kwargs or {}), "stage_name": "data"}


@gin.configurable
def tokenizer_stage(ctx: dict[str, Any], vocab_size: int = 1024,
                    tokenizer_dir: str | None = None) -> dict[str, Any]:
    """Use `tokenizer_dir` (e.g. a real model's) or train a small BPE on the journals' text."""
    if tokenizer_dir:
        return {"tokenizer_dir": tokenizer_dir, "stage_name": "tokenizer"}
    out = Path(ctx["workdir"]) / "tokenizer"
    if not (out / "tokenizer.json").exists():
        from data_agents.journal import iter_records
        from eigen_jax.chat import views
        from eigen_jax.chat.tiny_tokenizer import train_tiny_tokenizer

        def corpus():
            for path in sorted(Path(ctx["journal_dir"]).glob("*.jsonl")):
                for r in iter_records(path):
                    if r.split != "train":
                        continue
                    yield r.policy
                    yield json.dumps(r.tools)
                    yield views.user_system_prompt(r.task)
                    for m in r.messages:
                        yield m["content"]
                        for c in m.get("tool_calls", []):
                            yield json.dumps({"name": c["name"], "arguments": c["arguments"]})

        train_tiny_tokenizer(corpus(), vocab_size, str(out))
    return {"tokenizer_dir": str(out), "stage_name": "tokenizer"}


# --------------------------------------------------------------------------- SFT
@gin.configurable
def sft_stage(ctx: dict[str, Any], objective: str = "agent", name: str | None = None,
              run: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
    """Agent SFT or user-simulator SFT (`objective`), via `eigen_jax.train.sft.run_sft`."""
    from eigen_jax.train.sft import run_sft

    name = name or f"sft_{objective}"
    result = (run or run_sft)(workdir=str(Path(ctx["workdir"]) / name),
                              data_dir=ctx["data_dir"], tokenizer_dir=ctx["tokenizer_dir"],
                              objective=objective)
    return {f"{objective}_hf_dir": result.get("hf_dir"), f"{name}_result": result,
            "stage_name": name}
