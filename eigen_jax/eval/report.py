"""A run's report: `report.json` + `report.md` with pass^k per evaluated checkpoint, paired
comparisons of consecutive checkpoints, the GRPO reward curve and the time per stage.

Rendering only: the pipeline hands over what its stages produced; nothing here trains or
evaluates. Every path is an `etils.epath` path, so the run folder may be a URL.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from eigen_jax import paths
from eigen_jax.eval.compare import compare_table, format_comparison
from eigen_jax.eval.results import format_table, plot_pass_k


def write_report(workdir, *, evals: Mapping[str, dict], runs: Mapping[str, dict],
                 timings: Mapping[str, float], compile_s: Mapping[str, float],
                 dataset_splits: Mapping[str, int] | None = None) -> Any:
    """`workdir/report.{json,md}` (+ `pass_k.png`, `reward_curve.png`); returns the .md path.

    evals: checkpoint name → `evaluate_checkpoint` summary, in evaluation order (each is also at
    `workdir/eval/NAME/results.json`); runs: stage → its run's result (`sft_agent`, `grpo`, ...).
    """
    wd = paths.resolve(workdir)
    report: dict[str, Any] = {"timings_s": dict(timings), "compile_s": dict(compile_s),
                              "eval": dict(evals), "dataset_splits": dataset_splits}
    for stage, result in runs.items():
        report[stage] = {k: v for k, v in result.items() if k != "hf_dir"}
    if evals:
        plot_pass_k(dict(evals), wd / "pass_k.png")
    report["comparisons"] = compare_consecutive(wd, list(evals))
    curve = (runs.get("grpo") or {}).get("reward_curve")
    if curve:
        plot_reward_curve(curve, wd / "reward_curve.png")
    (wd / "report.json").write_text(json.dumps(report, indent=1, default=str))
    lines = ["# eigen-jax run report", "", f"workdir: `{wd}`", "", "## pass^k on held-out tasks",
             "", "```", format_table(dict(evals)) if evals else "(no evaluation stage)", "```",
             ""]
    for pair in report["comparisons"]:
        lines += [f"### {pair['candidate']} vs {pair['baseline']} (paired bootstrap over tasks)",
                  "", pair["table"], ""]
    lines += ["## Time per stage (s)", "", "| stage | seconds | of which JAX compiling |",
              "|---|---|---|"]
    lines += [f"| {k} | {v} | {compile_s.get(k, '')} |" for k, v in timings.items()]
    if curve:
        lines += ["", "## GRPO reward curve", "", "![reward curve](reward_curve.png)"]
    (wd / "report.md").write_text("\n".join(lines) + "\n")
    return wd / "report.md"


def compare_consecutive(workdir, names: list[str]) -> list[dict[str, Any]]:
    """Each evaluated checkpoint against the one before it (random → sft → grpo), paired by
    task, from their `eval/NAME/results.json`."""
    wd = paths.resolve(workdir)
    out = []
    for base, cand in zip(names, names[1:]):
        a, b = (json.loads((wd / "eval" / n / "results.json").read_text()) for n in (base, cand))
        rows = compare_table(a, b)
        out.append({"baseline": base, "candidate": cand, "rows": rows,
                    "table": format_comparison(rows, base, cand)})
    return out


def plot_reward_curve(curve, path) -> None:
    """Mean rollout reward per GRPO step as a PNG at `path` (any epath scheme)."""
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
    with paths.resolve(path).open("wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
