"""Episodes → train batch: layouts, packing invariants, and equal loss/gradient across layouts.

The loss reference is a NumPy recomputation from a plain (unpacked, cache-free) forward pass of
each episode, independent of the packing and of the loss code under test.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from eigen_jax.models import Transformer, get_config
from eigen_jax.rl.batching import layout_token_count, make_train_batch, pad_batch
from eigen_jax.rl.episode import Episode
from eigen_jax.rl.grpo_step import make_grpo_loss, make_logprob_fn
from eigen_jax.train.state import split_model


def synthetic_episode(rng, turn_lengths, context=12, gap=5, vocab=256, reward=1.0, idx=0):
    """Context, then per turn `gap` non-policy ids (user/tool + generation prompt) and a policy
    turn of the given length."""
    tokens, mask, turns = list(rng.randint(3, vocab, context)), [False] * context, []
    for n in turn_lengths:
        tokens += list(rng.randint(3, vocab, gap))
        mask += [False] * gap
        turns.append((len(tokens), len(tokens) + n))
        tokens += list(rng.randint(3, vocab, n))
        mask += [True] * n
    tokens += list(rng.randint(3, vocab, gap))  # the user's closing message: not trained
    mask += [False] * gap
    mask = np.asarray(mask)
    lps = np.where(mask, -rng.uniform(0.5, 6.0, len(mask)), 0.0)
    return Episode(f"t{idx}", idx, 0, np.asarray(tokens), mask, lps, turns, reward, "user_stop",
                   [])


def test_layout_sequences_and_packing_invariants():
    rng = np.random.RandomState(0)
    eps = [synthetic_episode(rng, [4, 7, 3], idx=0), synthetic_episode(rng, [9, 2], idx=1)]
    adv = [0.5, -1.5]
    for layout, expected_seqs in (("trajectory", 2), ("per_turn", 5)):
        batch = make_train_batch(eps, adv, layout, min_len=16, row_multiple=4)
        assert batch["tokens"].shape[0] % 4 == 0
        seg = batch["segment_ids"]
        assert sum(len(set(r[r > 0])) for r in seg) == expected_seqs
        # every policy token of every turn is trained exactly once, with its advantage
        assert batch["loss_mask"].sum() == sum(e.num_policy_tokens for e in eps)
        assert sorted(np.unique(batch["advantages"][batch["loss_mask"] > 0])) == [-1.5, 0.5]
        np.testing.assert_array_equal(batch["advantages"][batch["loss_mask"] == 0], 0)
        # positions restart at 0 in every segment; ids and behaviour log-probs land where the
        # episode has them
        for r in range(seg.shape[0]):
            for s in set(seg[r][seg[r] > 0]):
                idx = np.where(seg[r] == s)[0]
                np.testing.assert_array_equal(batch["positions"][r, idx], np.arange(len(idx)))
                src = next(e for e in eps if np.array_equal(e.tokens[:len(idx)],
                                                            batch["tokens"][r, idx]))
                on = batch["loss_mask"][r, idx] > 0
                np.testing.assert_allclose(batch["behaviour_logprobs"][r, idx][on],
                                           src.sampler_logprobs[:len(idx)][on])
    # per-turn costs the prefix of every turn; trajectory only up to the last policy token
    assert layout_token_count(eps, "per_turn") == sum(e for ep in eps for _, e in ep.policy_turns)
    assert layout_token_count(eps, "trajectory") == sum(ep.policy_turns[-1][1] for ep in eps)


def test_ten_turn_token_saving():
    rng = np.random.RandomState(1)
    eps = [synthetic_episode(rng, [60] * 10, context=300, gap=40, idx=i) for i in range(4)]
    traj, per_turn = (layout_token_count(eps, lay) for lay in ("trajectory", "per_turn"))
    # 10 turns of (40 + 60) after a 300-token prefix: 1300 vs sum_k (300 + 100 k) = 8500
    assert traj == 4 * 1300 and per_turn == 4 * 8500


def test_pad_batch_refuses_to_shrink():
    ep = synthetic_episode(np.random.RandomState(0), [4])
    batch = make_train_batch([ep], [1.0], min_len=16)
    rows, length = batch["tokens"].shape
    with pytest.raises(ValueError, match="cannot shrink"):
        pad_batch(batch, rows, length - 1, batch["score_index"].shape[1])


def test_bad_input_is_named():
    rng = np.random.RandomState(2)
    ep = synthetic_episode(rng, [30])
    with pytest.raises(ValueError, match="layout"):
        make_train_batch([ep], [1.0], "sideways")
    with pytest.raises(ValueError, match="exceeds max_len"):
        make_train_batch([ep], [1.0], max_len=32)
    with pytest.raises(ValueError, match="advantages"):
        make_train_batch([ep], [1.0, 2.0])
    with pytest.raises(ValueError, match="union of policy_turns"):
        Episode("t", 0, 0, ep.tokens, ~ep.policy_mask, ep.sampler_logprobs, ep.policy_turns, 1.0,
                "user_stop", [])


@nnx.jit
def _forward(model, ids):
    return model(ids)


def _numpy_loss(model, eps, adv, old_shift=0.0, eps_clip=0.4, is_cap=5.0):
    """Token-mean clipped surrogate from per-episode cache-free forward passes (float64)."""
    total, count = 0.0, 0
    for ep, a in zip(eps, adv):
        logits = np.asarray(_forward(model, jnp.asarray(ep.tokens[None])), np.float64)[0]
        z = logits - logits.max(-1, keepdims=True)
        logp_all = z - np.log(np.exp(z).sum(-1, keepdims=True))
        t = np.where(ep.policy_mask)[0]
        logp = logp_all[t - 1, ep.tokens[t]]
        old = logp + old_shift
        w = np.exp(old - ep.sampler_logprobs[t])
        keep = w <= is_cap
        ratio = np.exp(logp - old)
        per = -w * np.minimum(ratio * a, np.clip(ratio, 1 - eps_clip, 1 + eps_clip) * a)
        total += per[keep].sum()
        count += len(t)
    return total / count


def test_layouts_give_equal_loss_and_gradient():
    rng = np.random.RandomState(3)
    eps = [synthetic_episode(rng, [5, 8, 4], idx=0, reward=1.0),
           synthetic_episode(rng, [6, 3], idx=1, reward=0.0),
           synthetic_episode(rng, [7], idx=2, reward=1.0)]
    adv = [0.7, -1.4, 0.7]
    model = Transformer(get_config("tiny-qwen3"), rngs=nnx.Rngs(0))
    graphdef, params, rest = split_model(model)
    # The sampler's log-probs: the model's own, perturbed, so IS weights differ from 1 and a
    # few exceed the cap.
    for ep in eps:
        logits = np.asarray(_forward(model, jnp.asarray(ep.tokens[None])), np.float64)[0]
        z = logits - logits.max(-1, keepdims=True)
        lp = (z - np.log(np.exp(z).sum(-1, keepdims=True)))[np.arange(len(ep.tokens)) - 1,
                                                               ep.tokens]
        ep.sampler_logprobs = np.where(ep.policy_mask, lp + rng.normal(0, 0.8, len(lp)),
                                       0).astype(np.float32)
    logprob_fn = make_logprob_fn(graphdef, rest, chunk_size=32)
    loss_fn = make_grpo_loss("grpo", chunk_size=32, with_entropy=False, is_cap=5.0)
    results = {}
    for layout in ("trajectory", "per_turn", "padded"):
        host = make_train_batch(eps, adv, "trajectory" if layout == "padded" else layout,
                                min_len=16)
        if layout == "padded":  # a larger, already compiled shape: padding changes nothing
            rows, length = host["tokens"].shape
            host = pad_batch(host, rows + 3, length + 16, host["score_index"].shape[1] + 8)
        batch = {k: jnp.asarray(v) for k, v in host.items()}
        # π_old a little off the current policy so that ρ != 1 and clipping takes part
        batch["old_logprobs"] = logprob_fn(params, batch) + 0.3 * batch["loss_mask"]
        normalizer = batch["loss_mask"][:, 1:].sum().astype(jnp.float32)

        @jax.jit
        def loss_and_grad(p, batch, normalizer):
            return jax.value_and_grad(
                lambda q: loss_fn(nnx.merge(graphdef, q, rest), batch, normalizer),
                has_aux=True)(p)

        (loss, sums), grads = loss_and_grad(params, batch, normalizer)
        results[layout] = (float(loss), grads, sums)
    ref = _numpy_loss(model, eps, adv, old_shift=0.3)
    assert results["trajectory"][0] == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert results["per_turn"][0] == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert results["padded"][0] == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert float(results["trajectory"][2]["is_masked_tokens"]) > 0  # the cap took part
    g_traj, g_turn = results["trajectory"][1], results["per_turn"][1]
    norm = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_traj))
    assert norm > 1e-4
    for other in (g_turn, results["padded"][1]):
        for a, b in zip(jax.tree.leaves(g_traj), jax.tree.leaves(other)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5 * norm, rtol=1e-4)
