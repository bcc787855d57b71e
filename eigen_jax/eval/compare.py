"""Is run B better than run A? A paired comparison of two evaluations over the same tasks.

Both runs saw the same held-out tasks, so the honest uncertainty of "pass^k went up by Δ" comes
from resampling TASKS (not trials) with replacement and recomputing the mean per-task difference
— the paired bootstrap. Pairing matters: per-task difficulty varies far more than the change a
training stage makes, and an unpaired interval would bury a real +4 points in task noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from eigen_jax.eval.passk import pass_hat_k, trial_counts


def per_task_pass_k(result: Mapping[str, Any], k: int) -> dict[str, float]:
    """Task id → that task's unbiased pass^k estimate C(c,k)/C(n,k) from a `results.json` dict."""
    counts = trial_counts(
        {
            task_id: [float(t["reward"]) for t in trials]
            for task_id, trials in result["tasks"].items()
        }
    )
    out = {}
    for task_id, (n, c) in counts.items():
        if k > n:
            raise ValueError(
                f"pass^{k} needs at least {k} trials per task; task {task_id!r} has {n}"
            )
        out[task_id] = pass_hat_k(n, c, k)
    return out


def paired_difference(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    k: int = 1,
    num_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Δ pass^k = candidate − baseline over their shared tasks, with a paired-bootstrap CI.

    Returns `delta`, `ci` (percentile interval), both runs' pass^k on the shared tasks, how many
    tasks went up / down / stayed, and how many tasks only one run has (excluded, reported).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a, b = per_task_pass_k(baseline, k), per_task_pass_k(candidate, k)
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("the two evaluations share no task ids; compare runs on the same split")
    da = np.array([a[t] for t in shared])
    db = np.array([b[t] for t in shared])
    diff = db - da
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(shared), size=(num_resamples, len(shared)))
    means = diff[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return {
        "k": k,
        "tasks": len(shared),
        "baseline": float(da.mean()),
        "candidate": float(db.mean()),
        "delta": float(diff.mean()),
        "ci": [float(lo), float(hi)],
        "confidence": confidence,
        "up": int((diff > 0).sum()),
        "down": int((diff < 0).sum()),
        "same": int((diff == 0).sum()),
        "unpaired_tasks": len(set(a) ^ set(b)),
    }


def compare_table(
    baseline: Mapping[str, Any], candidate: Mapping[str, Any], **kwargs: Any
) -> list[dict[str, Any]]:
    """`paired_difference` for every k both runs support (1..min trials)."""
    n = min(len(v) for r in (baseline, candidate) for v in r["tasks"].values())
    return [paired_difference(baseline, candidate, k=k, **kwargs) for k in range(1, n + 1)]


def format_comparison(rows: list[dict[str, Any]], baseline: str, candidate: str) -> str:
    """A Markdown table: k, both runs' pass^k, Δ with its CI, tasks up/down (in points)."""
    pct = int(round(100 * rows[0]["confidence"])) if rows else 95
    lines = [
        f"| k | {baseline} | {candidate} | Δ ({pct}% CI) | tasks up / down |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["ci"]
        lines.append(
            f"| {r['k']} | {100 * r['baseline']:.1f} | {100 * r['candidate']:.1f} | "
            f"{100 * r['delta']:+.1f} ({100 * lo:+.1f}, {100 * hi:+.1f}) | "
            f"{r['up']} / {r['down']} |"
        )
    return "\n".join(lines)
