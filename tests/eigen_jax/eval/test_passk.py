"""pass^k / pass@k against brute-force enumeration over all k-subsets of the trials."""

import itertools

import numpy as np
import pytest

from eigen_jax.eval.passk import pass_at_k, pass_hat_k, pass_table


def brute(trials, k):
    subsets = list(itertools.combinations(trials, k))
    return (np.mean([all(s) for s in subsets]), np.mean([any(s) for s in subsets]))


@pytest.mark.parametrize(
    "trials", [[1, 0, 1, 1], [0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 1, 0, 1], [0, 1]]
)
def test_matches_enumeration(trials):
    n, c = len(trials), sum(trials)
    for k in range(1, n + 1):
        all_ok, any_ok = brute(trials, k)
        assert pass_hat_k(n, c, k) == pytest.approx(all_ok)
        assert pass_at_k(n, c, k) == pytest.approx(any_ok)


def test_table_averages_tasks_and_limits_k():
    rewards = {"a": [1, 1, 0, 1], "b": [0, 0, 1], "c": [1, 1, 1]}
    t = pass_table(rewards)
    assert sorted(t["pass^k"]) == [1, 2, 3]  # k up to the smallest n
    for k in (1, 2, 3):
        exp = np.mean([brute(v, k)[0] for v in rewards.values()])
        assert t["pass^k"][k] == pytest.approx(exp)
    assert t["pass^k"][1] == pytest.approx(t["pass@k"][1])
    assert t["pass^k"][3] <= t["pass^k"][1] <= t["pass@k"][3]


def test_bad_input():
    with pytest.raises(ValueError, match="non-binary"):
        pass_table({"a": [0.5, 1]})
    with pytest.raises(ValueError, match="no trials"):
        pass_table({"a": []})
    with pytest.raises(ValueError):
        pass_hat_k(3, 4, 1)
