"""Paired comparison of two evaluations: exact Δ by hand, the CI against the normal approximation."""

import numpy as np
import pytest

from eigen_jax.eval.compare import compare_table, format_comparison, paired_difference


def result(rewards_by_task):
    return {
        "tasks": {
            t: [{"trial": i, "reward": r} for i, r in enumerate(rs)]
            for t, rs in rewards_by_task.items()
        }
    }


A = result({"t0": [1, 1, 0, 0], "t1": [0, 0, 0, 0], "t2": [1, 1, 1, 1], "t3": [1, 0, 0, 0]})
B = result({"t0": [1, 1, 1, 0], "t1": [0, 0, 0, 0], "t2": [1, 1, 1, 0], "t3": [1, 1, 1, 1]})


def test_delta_and_counts_by_hand():
    r = paired_difference(A, B, k=1)
    # per-task pass^1 = c/4: A (.5, 0, 1, .25), B (.75, 0, .75, 1)
    assert r["baseline"] == pytest.approx(1.75 / 4) and r["candidate"] == pytest.approx(2.5 / 4)
    assert r["delta"] == pytest.approx((0.25 + 0 - 0.25 + 0.75) / 4)
    assert (r["up"], r["down"], r["same"], r["tasks"]) == (2, 1, 1, 4)
    r2 = paired_difference(A, B, k=2)
    # pass^2 = C(c,2)/C(4,2): A (1/6, 0, 1, 0), B (3/6, 0, 3/6, 1)
    assert r2["delta"] == pytest.approx((2 / 6 + 0 - 3 / 6 + 1) / 4)
    lo, hi = r2["ci"]
    assert lo <= r2["delta"] <= hi


def test_identical_shift_gives_a_point_interval():
    a = result({f"t{i}": [0, 0] for i in range(10)})
    b = result({f"t{i}": [1, 0] for i in range(10)})
    r = paired_difference(a, b)
    assert r["delta"] == pytest.approx(0.5) and r["ci"] == pytest.approx([0.5, 0.5])


def test_interval_matches_the_normal_approximation_on_many_tasks():
    rng = np.random.default_rng(1)
    n = 400
    pa = rng.uniform(0, 1, n)
    pb = np.clip(pa + rng.normal(0.05, 0.2, n), 0, 1)
    a = result({f"t{i}": list((rng.uniform(size=4) < pa[i]).astype(int)) for i in range(n)})
    b = result({f"t{i}": list((rng.uniform(size=4) < pb[i]).astype(int)) for i in range(n)})
    r = paired_difference(a, b, num_resamples=20_000)
    d = np.array(
        [
            np.mean([t["reward"] for t in b["tasks"][k]])
            - np.mean([t["reward"] for t in a["tasks"][k]])
            for k in a["tasks"]
        ]
    )
    half = 1.96 * d.std() / np.sqrt(n)
    lo, hi = r["ci"]
    assert r["delta"] == pytest.approx(d.mean())
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.08)
    assert (lo + hi) / 2 == pytest.approx(d.mean(), abs=0.15 * half)


def test_only_shared_tasks_count_and_bad_input_is_named():
    b = result({"t0": [1, 1, 1, 0], "t9": [1, 1, 1, 1]})
    r = paired_difference(A, b)
    assert r["tasks"] == 1 and r["unpaired_tasks"] == 4
    with pytest.raises(ValueError, match="share no task"):
        paired_difference(A, result({"x": [1]}))
    with pytest.raises(ValueError, match="pass\\^5 needs at least 5 trials"):
        paired_difference(A, B, k=5)
    with pytest.raises(ValueError, match="non-binary rewards"):
        paired_difference(A, result({"t0": [1, 0.5]}))


def test_table_covers_every_k_and_formats_points():
    rows = compare_table(A, B)
    assert [r["k"] for r in rows] == [1, 2, 3, 4]
    md = format_comparison(rows, "sft", "grpo")
    assert md.splitlines()[0].startswith("| k | sft | grpo | Δ (95% CI)")
    assert "| 1 | 43.8 | 62.5 | +18.8 (" in md and "| 2 / 1 |" in md
