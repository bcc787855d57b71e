"""pass^k and pass@k: unbiased estimators from n trials per task with c successes.

pass^k (tau-bench): the chance that k trials drawn without replacement from the n ALL succeed,
C(c, k) / C(n, k), averaged over tasks — a reliability metric that falls with k.
pass@k: the chance that AT LEAST ONE of k succeeds, 1 - C(n - c, k) / C(n, k) — rises with k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb


def pass_hat_k(n: int, c: int, k: int) -> float:
    _check(n, c, k)
    return comb(c, k) / comb(n, k)


def pass_at_k(n: int, c: int, k: int) -> float:
    _check(n, c, k)
    return 1.0 - comb(n - c, k) / comb(n, k)


def _check(n: int, c: int, k: int) -> None:
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")


def trial_counts(rewards: Mapping[str, Sequence[float]]) -> dict[str, tuple[int, int]]:
    """Task id → (trials n, successes c); rewards must be 0 or 1 (a checker's verdict)."""
    counts = {}
    for task, rs in rewards.items():
        if not rs:
            raise ValueError(f"task {task!r} has no trials")
        bad = [r for r in rs if r not in (0, 1, 0.0, 1.0)]
        if bad:
            raise ValueError(f"task {task!r} has non-binary rewards {bad[:3]}")
        counts[task] = (len(rs), int(sum(rs)))
    return counts


def pass_table(rewards: Mapping[str, Sequence[float]]) -> dict[str, dict[int, float]]:
    """Per-k means over tasks of pass^k and pass@k, for every k up to the smallest trial count.

    `rewards` maps task id → that task's trial rewards (each 0 or 1).
    """
    if not rewards:
        raise ValueError("no tasks to score")
    counts = trial_counts(rewards)
    k_max = min(n for n, _ in counts.values())
    out: dict[str, dict[int, float]] = {"pass^k": {}, "pass@k": {}}
    for k in range(1, k_max + 1):
        out["pass^k"][k] = sum(pass_hat_k(n, c, k) for n, c in counts.values()) / len(counts)
        out["pass@k"][k] = sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
    return out
