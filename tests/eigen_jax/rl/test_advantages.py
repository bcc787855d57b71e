"""Advantages and filtering against NumPy references on hand-built groups."""

import numpy as np
import pytest

from eigen_jax.rl import advantages as adv


def np_grpo(r):
    r = np.asarray(r, np.float64)
    return (r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-6)


def test_grpo_matches_numpy_and_hand_values():
    r = np.array([[1, 0, 0, 1], [1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    out = np.asarray(adv.get("grpo")(r))
    np.testing.assert_allclose(out, np_grpo(r), rtol=1e-5, atol=1e-6)
    # hand: group [1,1,1,0]: mean .75, population std sqrt(.1875)
    s = np.sqrt(0.1875)
    np.testing.assert_allclose(out[1], [0.25 / s, 0.25 / s, 0.25 / s, -0.75 / s], rtol=1e-5)
    assert np.all(out[2] == 0) and np.all(out[3] == 0)  # all-equal groups carry no signal


def test_dr_grpo_and_rloo():
    r = np.array([[1.0, 0.0, 0.0, 1.0, 1.0]])
    np.testing.assert_allclose(adv.get("dr_grpo")(r), r - 0.6, atol=1e-6)
    loo = np.array([[r[0, i] - np.delete(r[0], i).mean() for i in range(5)]])
    np.testing.assert_allclose(adv.get("rloo")(r), loo, atol=1e-6)
    with pytest.raises(ValueError, match="group_size"):
        adv.get("rloo")(np.ones((2, 1)))


def test_informative_groups():
    r = np.array([[0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 1]])
    assert np.asarray(adv.informative_groups(r)).tolist() == [False, False, True, True]


def test_unknown_estimator_and_bad_shape():
    with pytest.raises(ValueError, match="unknown advantage"):
        adv.get("nope")
    with pytest.raises(ValueError, match="num_groups"):
        adv.get("grpo")(np.ones(4))
