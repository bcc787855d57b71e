"""A run's report: `report.json` + `report.md` with pass^k per evaluated checkpoint, paired
comparisons of consecutive checkpoints, the GRPO reward curve and the time per stage.

Rendering only: the pipeline hands over what its stages produced; nothing here trains or
evaluates. Every path is an `etils.epath` path, so the run folder may be a URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from eigen_jax import paths
from eigen_jax.eval.compare import compare_table, format_comparison, per_task_pass_k
from eigen_jax.eval.results import format_table


def write_report(
    workdir,
    *,
    evals: Mapping[str, dict],
    runs: Mapping[str, dict],
    timings: Mapping[str, float],
    compile_s: Mapping[str, float],
    dataset_splits: Mapping[str, int] | None = None,
    baseline: str | None = None,
) -> Any:
    """`workdir/report.{json,md}` (+ `pass_k.png`, `reward_curve.png`); returns the .md path.

    evals: checkpoint name → `evaluate_checkpoint` summary, in evaluation order (each is also at
    `workdir/eval/NAME/results.json`); runs: stage → its run's result (`sft_agent`, `grpo`, ...).
    `baseline`: compare every other checkpoint with this one (an ablation table: each GRPO
    variant against SFT); without it each checkpoint is compared with the one before it.
    """
    wd = paths.resolve(workdir)
    full = {n: json.loads((wd / "eval" / n / "results.json").read_text()) for n in evals}
    intervals = {n: pass_k_intervals(r) for n, r in full.items()}
    report: dict[str, Any] = {
        "timings_s": dict(timings),
        "compile_s": dict(compile_s),
        "eval": dict(evals),
        "pass_k_95ci": intervals,
        "dataset_splits": dataset_splits,
        "finish_reasons": finish_reasons(wd, evals, runs),
    }
    for stage, result in runs.items():
        report[stage] = {k: v for k, v in result.items() if k != "hf_dir"}
    if evals:
        plot_pass_k(full, intervals, wd / "pass_k.png")
    report["comparisons"] = compare_checkpoints(wd, list(evals), baseline)
    curve = {stage: r["reward_curve"] for stage, r in runs.items() if r.get("reward_curve")}
    if curve:
        plot_reward_curves(curve, wd / "reward_curve.png")
    (wd / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (wd / "report.md").write_text("\n".join(_markdown(wd, report, timings, compile_s, curve)))
    return wd / "report.md"


def _markdown(wd, report: dict[str, Any], timings, compile_s, curve) -> list[str]:
    evals = report["eval"]
    lines = [
        "# eigen-jax run report",
        "",
        f"workdir: `{wd}`",
        "",
        "## pass^k on held-out tasks",
        "",
        "```",
        format_table(dict(evals)) if evals else "(no evaluation stage)",
        "```",
        "",
    ]
    for name, ci in report["pass_k_95ci"].items():
        lines.append(
            f"- {name}: "
            + ", ".join(
                f"pass^{k} {100 * _at(evals[name]['pass^k'], k):.1f} ({100 * lo:.1f}-{100 * hi:.1f})"
                for k, (lo, hi) in ci.items()
            )
            + " (95% bootstrap over tasks)"
        )
    if evals:
        lines += ["", "![pass^k](pass_k.png)", ""]
    for pair in report["comparisons"]:
        lines += [
            f"### {pair['candidate']} vs {pair['baseline']} (paired bootstrap over tasks)",
            "",
            pair["table"],
            "",
        ]
    if report["finish_reasons"]:
        reasons = sorted({r for v in report["finish_reasons"].values() for r in v})
        lines += [
            "## How episodes ended (fraction)",
            "",
            "| stage | " + " | ".join(reasons) + " |",
            "|---" * (len(reasons) + 1) + "|",
        ]
        lines += [
            f"| {stage} | " + " | ".join(f"{v.get(r, 0.0):.2f}" for r in reasons) + " |"
            for stage, v in report["finish_reasons"].items()
        ]
        lines.append("")
    lines += [
        "## Time per stage (s)",
        "",
        "| stage | seconds | of which JAX compiling |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v} | {compile_s.get(k, '')} |" for k, v in timings.items()]
    if curve:
        lines += ["", "## GRPO reward curve", "", "![reward curve](reward_curve.png)"]
    if (wd / "config.gin").exists():
        lines += [
            "",
            "## Configuration",
            "",
            "<details><summary>config.gin</summary>",
            "",
            "```",
            (wd / "config.gin").read_text().rstrip(),
            "```",
            "</details>",
        ]
    return lines + [""]


def _at(table: Mapping, k: int) -> float:
    """`table[k]` whether its keys are ints or, read back from JSON, strings."""
    return table[k] if k in table else table[str(k)]


def pass_k_intervals(
    result: Mapping[str, Any], num_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[int, list[float]]:
    """k → percentile-bootstrap interval of pass^k, resampling tasks (the unit of evaluation)."""
    n = min(len(v) for v in result["tasks"].values())
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(1, n + 1):
        by_task = per_task_pass_k(result, k)
        per_task = np.array([by_task[t] for t in sorted(by_task)])
        idx = rng.integers(0, len(per_task), size=(num_resamples, len(per_task)))
        tail = (1 - confidence) / 2
        out[k] = [float(x) for x in np.quantile(per_task[idx].mean(axis=1), [tail, 1 - tail])]
    return out


def finish_reasons(
    workdir, evals: Mapping[str, dict], runs: Mapping[str, dict]
) -> dict[str, dict[str, float]]:
    """Stage → fraction of its episodes per finish reason: each evaluation's trials, and every
    GRPO rollout (from the `finish_*` fractions its metrics log per step)."""
    out = {}
    for name, r in evals.items():
        total = sum(r.get("finish_reasons", {}).values())
        if total:
            out[f"eval {name}"] = {k: v / total for k, v in r["finish_reasons"].items()}
    for stage in runs:
        log = paths.resolve(workdir) / stage / "tb" / "metrics.jsonl"
        rows = [json.loads(x) for x in log.read_text().splitlines() if x] if log.exists() else []
        rows = [r for r in rows if "episodes" in r]
        episodes = sum(r["episodes"] for r in rows)
        if episodes:
            keys = {k for r in rows for k in r if k.startswith("finish_")}
            out[stage] = {
                k.removeprefix("finish_"): sum(r.get(k, 0.0) * r["episodes"] for r in rows)
                / episodes
                for k in sorted(keys)
            }
    return out


def plot_pass_k(results: Mapping[str, dict], intervals: Mapping[str, dict], path) -> None:
    """pass^k against k (integer ticks) per checkpoint, with 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, (name, r) in enumerate(results.items()):
        ks = sorted(int(k) for k in r["pass^k"])
        ys = [100 * _at(r["pass^k"], k) for k in ks]
        ci = intervals[name]
        err = [
            [y - 100 * ci[k][0] for k, y in zip(ks, ys)],
            [100 * ci[k][1] - y for k, y in zip(ks, ys)],
        ]
        ax.errorbar(
            [k + 0.04 * (i - 1) for k in ks], ys, yerr=err, marker="o", capsize=3, label=name
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("k")
    ax.set_ylabel("pass^k (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with paths.resolve(path).open("wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def compare_checkpoints(
    workdir, names: list[str], baseline: str | None = None
) -> list[dict[str, Any]]:
    """Each evaluated checkpoint against `baseline` (when given) or else against the one before
    it (random → sft → grpo), paired by task, from their `eval/NAME/results.json`."""
    if baseline is not None and baseline not in names:
        raise ValueError(f"report baseline {baseline!r} was not evaluated (evaluated: {names})")
    pairs = [(baseline, n) for n in names if n != baseline] if baseline else zip(names, names[1:])
    wd = paths.resolve(workdir)
    out = []
    for base, cand in pairs:
        a, b = (json.loads((wd / "eval" / n / "results.json").read_text()) for n in (base, cand))
        rows = compare_table(a, b)
        out.append(
            {
                "baseline": base,
                "candidate": cand,
                "rows": rows,
                "table": format_comparison(rows, base, cand),
            }
        )
    return out


def plot_reward_curves(curves: Mapping[str, Any], path) -> None:
    """Mean rollout reward per GRPO step, one line per GRPO run (stage name → [(step, reward)]),
    as a PNG at `path` (any epath scheme)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, curve in curves.items():
        steps, rewards = zip(*curve)
        ax.plot(steps, rewards, marker=".", label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean rollout reward")
    if len(curves) > 1:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with paths.resolve(path).open("wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
