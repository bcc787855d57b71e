"""Logit processing and sampling against a NumPy reference and against exact distributions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from eigen_jax.sampling import row_keys, sample_tokens, sampling_logprobs
from tests.eigen_jax.sampling.conftest import numpy_sampling_logprobs

SETTINGS = [  # (temperature, top_k, top_p)
    (1.0, 0, 1.0),
    (0.7, 0, 1.0),
    (1.0, 3, 1.0),
    (1.3, 0, 0.8),
    (0.8, 5, 0.6),
    (0.0, 4, 0.5),
    (2.0, 1, 1.0),
    (1.0, 0, 1e-6),
]


def test_logprobs_match_numpy_reference_with_mixed_rows():
    rng = np.random.RandomState(0)
    logits = rng.normal(0, 2.0, (len(SETTINGS), 50)).astype(np.float32)
    temp, top_k, top_p = (np.array(c) for c in zip(*SETTINGS))
    ours = np.asarray(sampling_logprobs(jnp.asarray(logits), temp, top_k, top_p))
    for row, (t, k, p) in enumerate(SETTINGS):
        ref = numpy_sampling_logprobs(logits[row], t, k, p)
        np.testing.assert_array_equal(np.isinf(ours[row]), np.isinf(ref), err_msg=str((t, k, p)))
        finite = np.isfinite(ref)
        np.testing.assert_allclose(ours[row][finite], ref[finite], atol=1e-5)
    # Spot-check the support sizes the settings imply (guards the reference too).
    support = np.isfinite(ours).sum(-1)
    assert support[0] == 50 and support[2] == 3 and support[6] == 1 and support[7] == 1
    assert support[5] == 50  # greedy rows report the unfiltered model distribution


def test_greedy_takes_argmax_and_reports_model_logprob():
    logits = jnp.asarray(np.random.RandomState(1).normal(size=(4, 30)), jnp.float32)
    keys = row_keys(np.arange(4), np.zeros(4))
    zeros = np.zeros(4)
    tokens, lps = sample_tokens(logits, keys, zeros, np.full(4, 5), np.full(4, 0.3))
    np.testing.assert_array_equal(tokens, np.argmax(logits, -1))
    ref = jax.nn.log_softmax(logits)[np.arange(4), np.argmax(logits, -1)]
    np.testing.assert_allclose(lps, ref, atol=1e-6)


@pytest.mark.parametrize(
    "temperature,top_k,top_p", [(0.7, 0, 1.0), (1.0, 3, 1.0), (1.3, 0, 0.8), (0.9, 5, 0.7)]
)
def test_empirical_distribution_matches_exact(temperature, top_k, top_p):
    """20k draws on a 10-token vocab: chi-square goodness of fit to the exact filtered
    distribution, nothing drawn off-support, and the test rejects the unfiltered distribution."""
    n, vocab = 20_000, 10
    logits = np.linspace(2.0, -2.0, vocab).astype(np.float32)
    logits = logits[np.random.RandomState(3).permutation(vocab)]
    batch = jnp.broadcast_to(jnp.asarray(logits), (n, vocab))
    keys = row_keys(np.arange(n, dtype=np.uint32), np.full(n, 17))
    settings = [np.full(n, temperature, np.float32), np.full(n, top_k), np.full(n, top_p)]
    tokens, lps = jax.jit(sample_tokens)(batch, keys, *settings)
    tokens, lps = np.asarray(tokens), np.asarray(lps)
    exact = np.exp(numpy_sampling_logprobs(logits, temperature, top_k, top_p))
    counts = np.bincount(tokens, minlength=vocab)
    support = exact > 0
    assert counts[~support].sum() == 0
    assert stats.chisquare(counts[support], exact[support] * n).pvalue > 1e-3
    unfiltered = np.exp(numpy_sampling_logprobs(logits, 1.0))
    assert stats.chisquare(counts, unfiltered * n).pvalue < 1e-6
    # The reported logprob of every draw is that token's exact probability.
    np.testing.assert_allclose(np.exp(lps), exact[tokens], rtol=1e-5)


def test_row_keys_depend_only_on_seed_and_index():
    a = jax.random.key_data(row_keys(np.array([5, 9, 5]), np.array([3, 3, 4])))
    b = jax.random.key_data(row_keys(np.array([9]), np.array([3])))
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], a[2])


def test_rejects_non_matrix_logits():
    with pytest.raises(ValueError, match="batch, vocab"):
        sampling_logprobs(jnp.zeros((2, 3, 4)), np.ones(2), np.zeros(2), np.ones(2))


@pytest.mark.parametrize("top_k", [0, 7])
def test_two_stage_inverse_cdf_draws_exactly_across_blocks(top_k):
    """Vocab 600 = two full 256-token blocks and a partial one; the support (all tokens, or 7
    scattered over the blocks) must be reproduced by 20k draws (chi-square), nothing off-support,
    and draws must land in every block with the exact block masses."""
    n, vocab = 20_000, 600
    rng = np.random.RandomState(5)
    logits = rng.normal(0, 1.0, vocab).astype(np.float32)
    if top_k:
        logits[[3, 255, 256, 300, 511, 512, 599]] += 8.0  # the top 7, straddling block edges
    batch = jnp.broadcast_to(jnp.asarray(logits), (n, vocab))
    keys = row_keys(np.arange(n, dtype=np.uint32), np.full(n, 3))
    settings = [np.ones(n, np.float32), np.full(n, top_k), np.ones(n, np.float32)]
    tokens = np.asarray(jax.jit(sample_tokens)(batch, keys, *settings)[0])
    exact = np.exp(numpy_sampling_logprobs(logits, 1.0, top_k, 1.0))
    counts = np.bincount(tokens, minlength=vocab)
    support = exact > 0
    assert counts[~support].sum() == 0
    block_counts = np.add.reduceat(counts, [0, 256, 512])
    block_mass = np.add.reduceat(exact, [0, 256, 512])
    assert stats.chisquare(block_counts, block_mass * n).pvalue > 1e-3
    if top_k:
        assert stats.chisquare(counts[support], exact[support] * n).pvalue > 1e-3
    else:  # 600 cells with ~33 expected draws each: pool into 30 equal-mass bins
        order = np.argsort(exact)
        edges = np.searchsorted(np.cumsum(exact[order]), np.linspace(0, 1, 31)[1:-1])
        binned = [c.sum() for c in np.split(counts[order], edges)]
        mass = [m.sum() for m in np.split(exact[order], edges)]
        assert stats.chisquare(binned, np.array(mass) * n).pvalue > 1e-3
