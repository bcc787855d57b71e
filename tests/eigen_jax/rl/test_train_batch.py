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
from eigen_jax.rl.episode import Episode
from eigen_jax.rl.learner_fns import make_grpo_loss, make_logprob_fn
from eigen_jax.rl.train_batch import (
    batch_shape,
    cheapest_train_batch,
    layout_token_count,
    make_train_batch,
    model_cost,
    pad_batch,
)
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
    return Episode(f"t{idx}", idx, 0, np.asarray(tokens), mask, lps, turns, reward, "user_stop", [])


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
                src = next(
                    e for e in eps if np.array_equal(e.tokens[: len(idx)], batch["tokens"][r, idx])
                )
                on = batch["loss_mask"][r, idx] > 0
                np.testing.assert_allclose(
                    batch["behaviour_logprobs"][r, idx][on], src.sampler_logprobs[: len(idx)][on]
                )
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
        Episode(
            "t",
            0,
            0,
            ep.tokens,
            ~ep.policy_mask,
            ep.sampler_logprobs,
            ep.policy_turns,
            1.0,
            "user_stop",
            [],
        )


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


def grouped(episodes, task_id="g", group_id=0):
    """The episodes as one GRPO group: same task and group ids, and the first episode's
    opening context (the shared prompt) in every one of them."""
    first = episodes[0]
    start = first.policy_turns[0][0] - 2  # keep each episode's last two context ids its own
    out = []
    for k, ep in enumerate(episodes):
        tokens = ep.tokens.copy()
        tokens[:start] = first.tokens[:start]
        out.append(
            Episode(
                task_id,
                group_id,
                k,
                tokens,
                ep.policy_mask,
                ep.sampler_logprobs,
                ep.policy_turns,
                ep.reward,
                ep.finish_reason,
                [],
            )
        )
    return out


def test_shared_prefix_layout():
    rng = np.random.RandomState(4)
    eps = grouped(
        [
            synthetic_episode(rng, n, context=20, idx=i)
            for i, n in enumerate(([5, 8], [6], [3, 3, 3]))
        ]
    )
    eps += [synthetic_episode(rng, [4], context=9, idx=7)]
    adv = [0.5, -1.0, 0.5, 2.0]
    for layout in ("trajectory", "per_turn"):
        plain = make_train_batch(eps, adv, layout, min_len=16, pack=False)
        shared = make_train_batch(eps, adv, layout, min_len=16, share_prefix=True, row_multiple=2)
        # the group's prefix is its common prefix less one id (that id's prediction may be
        # scored); the lone episode's prefix stops at the id before its first scored id
        np.testing.assert_array_equal(shared["prefix_lengths"][:2, 0], [20 + 5 - 2 - 1, 9 + 5 - 1])
        assert shared["prefix_tokens"].shape[0] % 2 == 0
        assert shared["loss_mask"].sum() == plain["loss_mask"].sum()
        # every row is its sequence with the prefix cut off, positions continuing after it
        for r in np.flatnonzero(plain["segment_ids"].any(axis=1)):
            p = shared["prefix_row"][r, 0]
            n = shared["prefix_lengths"][p, 0]
            length = plain["segment_ids"][r].sum()
            np.testing.assert_array_equal(shared["prefix_tokens"][p, :n], plain["tokens"][r, :n])
            for key in ("tokens", "positions", "loss_mask", "advantages", "behaviour_logprobs"):
                np.testing.assert_array_equal(shared[key][r, : length - n], plain[key][r, n:length])
            assert shared["segment_ids"][r].sum() == length - n
    padded = pad_batch(shared, *(d + 2 for d in batch_shape(shared)))
    assert batch_shape(padded) == tuple(d + 2 for d in batch_shape(shared))
    np.testing.assert_array_equal(padded["prefix_lengths"][-2:], 0)


@pytest.mark.parametrize(
    "preset", ["tiny-qwen3", pytest.param("tiny-qwen3-moe", marks=pytest.mark.slow)]
)
def test_layouts_give_equal_loss_and_gradient(preset):
    rng = np.random.RandomState(3)
    eps = grouped(
        [
            synthetic_episode(rng, [5, 8, 4], idx=0, reward=1.0),
            synthetic_episode(rng, [6, 3], idx=1, reward=0.0),
        ]
    )
    eps.append(synthetic_episode(rng, [7], idx=2, reward=1.0))
    adv = [0.7, -1.4, 0.7]
    model = Transformer(get_config(preset), rngs=nnx.Rngs(0))
    graphdef, params, rest = split_model(model)
    # The sampler's log-probs: the model's own, perturbed, so IS weights differ from 1 and a
    # few exceed the cap.
    for ep in eps:
        logits = np.asarray(_forward(model, jnp.asarray(ep.tokens[None])), np.float64)[0]
        z = logits - logits.max(-1, keepdims=True)
        lp = (z - np.log(np.exp(z).sum(-1, keepdims=True)))[
            np.arange(len(ep.tokens)) - 1, ep.tokens
        ]
        ep.sampler_logprobs = np.where(ep.policy_mask, lp + rng.normal(0, 0.8, len(lp)), 0).astype(
            np.float32
        )
    logprob_fn = make_logprob_fn(graphdef, rest, chunk_size=32)
    loss_fn = make_grpo_loss("grpo", chunk_size=32, with_entropy=False, is_cap=5.0)
    results = {}
    layouts = ("trajectory", "per_turn", "padded", "shared", "shared_per_turn", "shared_padded")
    for layout in layouts:
        host = make_train_batch(
            eps,
            adv,
            "per_turn" if "per_turn" in layout else "trajectory",
            min_len=16,
            share_prefix=layout.startswith("shared"),
        )
        if layout.endswith("padded"):  # a larger, already compiled shape: padding changes nothing
            host = pad_batch(host, *(d + 3 for d in batch_shape(host)))
        batch = {k: jnp.asarray(v) for k, v in host.items()}
        # π_old a little off the current policy so that ρ != 1 and clipping takes part
        batch["old_logprobs"] = logprob_fn(params, batch) + 0.3 * batch["loss_mask"]
        normalizer = batch["loss_mask"][:, 1:].sum().astype(jnp.float32)

        @jax.jit
        def loss_and_grad(p, batch, normalizer):
            return jax.value_and_grad(
                lambda q: loss_fn(nnx.merge(graphdef, q, rest), batch, normalizer), has_aux=True
            )(p)

        (loss, sums), grads = loss_and_grad(params, batch, normalizer)
        results[layout] = (float(loss), grads, sums)
    ref = _numpy_loss(model, eps, adv, old_shift=0.3)
    assert results["trajectory"][0] == pytest.approx(ref, rel=1e-4, abs=1e-6)
    assert results["per_turn"][0] == pytest.approx(ref, rel=1e-4, abs=1e-6)
    for layout in layouts[2:]:
        assert results[layout][0] == pytest.approx(ref, rel=1e-4, abs=1e-6), layout
    assert float(results["trajectory"][2]["is_masked_tokens"]) > 0  # the cap took part
    g_traj = results["trajectory"][1]
    norm = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_traj))
    assert norm > 1e-4
    for other in (results[layout][1] for layout in layouts[1:]):
        for a, b in zip(jax.tree.leaves(g_traj), jax.tree.leaves(other)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5 * norm, rtol=1e-4)


def test_shared_prefix_gradient_under_remat():
    """The cache path the shared-prefix learner runs is rematerialised like the training path:
    same loss and gradient with `remat="full"` as without."""
    rng = np.random.RandomState(5)
    eps = grouped([synthetic_episode(rng, n, context=14, idx=i) for i, n in enumerate(([4], [6]))])
    batch = {
        k: jnp.asarray(v)
        for k, v in make_train_batch(eps, [1.0, -1.0], min_len=16, share_prefix=True).items()
    }
    loss_fn = make_grpo_loss("grpo", chunk_size=32, with_entropy=False)
    out = []
    for remat in ("none", "full"):
        model = Transformer(get_config("tiny-qwen3", remat=remat), rngs=nnx.Rngs(0))
        graphdef, params, rest = split_model(model)
        out.append(
            jax.jit(
                jax.value_and_grad(
                    lambda p: loss_fn(nnx.merge(graphdef, p, rest), batch, jnp.float32(10.0))[0]
                )
            )(params)
        )
    assert out[0][0] == pytest.approx(float(out[1][0]), rel=1e-6)
    for a, b in zip(jax.tree.leaves(out[0][1]), jax.tree.leaves(out[1][1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)


def test_shared_prefix_step_sharded_equals_single_device():
    """The shared-prefix GRPO step on a (data 2, fsdp 2, tensor 2) mesh, prefix table and rows
    sharded on the batch axes, equals the single-device step and the plain layout's."""
    import optax

    from eigen_jax import sharding as shd
    from eigen_jax.train import state as state_lib

    rng = np.random.RandomState(6)
    eps = grouped(
        [
            synthetic_episode(rng, n, context=18, idx=i)
            for i, n in enumerate(([4], [6, 2], [3], [5]))
        ]
    )
    eps += grouped(
        [synthetic_episode(rng, n, context=11, idx=i) for i, n in enumerate(([7], [2]))],
        task_id="h",
    )
    adv = [1.0, -1.0, 0.5, -0.5, 1.0, -1.0]
    loss_fn = make_grpo_loss("grpo", chunk_size=32, with_entropy=False)
    results = {}
    for name, mesh_shape, share in (
        ("plain", (1, 1, 1), False),
        ("single", (1, 1, 1), True),
        ("sharded", (2, 2, 2), True),
    ):
        mesh = shd.make_mesh(mesh_shape, devices=jax.devices()[: int(np.prod(mesh_shape))])
        model = shd.shard_model(Transformer(get_config("tiny-qwen3"), rngs=nnx.Rngs(0)), mesh)
        graphdef, params, rest = split_model(model)
        state = state_lib.init_train_state(params, optax.sgd(0.5), mesh)
        step = state_lib.make_train_step(
            graphdef,
            rest,
            optax.sgd(0.5),
            loss_fn,
            mesh=mesh,
            state_sharding=state_lib.state_shardings(state),
        )
        host = make_train_batch(eps, adv, min_len=16, row_multiple=4, share_prefix=share)
        batch = {k: jax.device_put(v, shd.batch_sharding(mesh, 2)) for k, v in host.items()}
        state, metrics = step(state, batch)
        results[name] = (float(metrics["loss"]), state.params)
    for name in ("single", "sharded"):
        assert results[name][0] == pytest.approx(results["plain"][0], rel=1e-5)
        for a, b in zip(jax.tree.leaves(results[name][1]), jax.tree.leaves(results["plain"][1])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_cheapest_batch_shares_long_prompts_and_packs_long_episodes():
    rng = np.random.RandomState(7)
    # a long shared prompt and one short answer per sample: sharing runs ~1/6 of the tokens
    short = grouped([synthetic_episode(rng, [8], context=200, gap=2, idx=i) for i in range(8)])
    # a short prompt and long, ragged multi-turn episodes: packing wins
    long_ = grouped(
        [
            synthetic_episode(rng, [60] * int(rng.randint(2, 9)), context=20, gap=30, idx=i)
            for i in range(8)
        ]
    )
    token_cost = 768.0  # the quickstart policy's (`sampling.shapes.token_cost_of`)
    for eps, shared in ((short, True), (long_, False)):
        batch = cheapest_train_batch(eps, [0.0] * 8, "trajectory", token_cost, min_len=16)
        assert ("prefix_tokens" in batch) == shared
        other = make_train_batch(eps, [0.0] * 8, min_len=16, share_prefix=not shared)
        assert model_cost(batch, token_cost) < model_cost(other, token_cost)
