"""Smoke tests of the eigen-jax vs Tunix benchmark: the two sides must feed the same workload
(prompt ids, reward rule), the table's ratios must point the right way, and the eigen-jax side's
measurements must run on a tiny model. The full side-by-side (it builds the Tunix venv) is slow.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench")
sys.path.insert(0, os.path.abspath(BENCH))
sys.path.insert(0, os.path.abspath(os.path.join(BENCH, "peers")))

compare = importlib.import_module("compare_tunix")
report = importlib.import_module("compare_report")
peer = importlib.import_module("tunix_bench")  # imports no tunix at module level

SPEC = dict(
    name="tiny",
    preset="tiny-qwen3",
    overrides={"rope_theta": 1e6},
    dtype="float32",
    seed=0,
    repeats=1,
    clip_eps=0.2,
    batch=3,
    prompt_len=8,
    max_len=64,
    decode_short=4,
    decode_long=12,
    train_batch=2,
    train_seq=16,
    group_size=4,
    grpo_prompts=1,
    grpo_new_tokens=6,
)


def test_both_sides_draw_the_same_prompts():
    ours = compare.prompts_of(SPEC, 256)
    theirs = [[int(t) for t in s.split()] for s in peer.prompts_text(SPEC, 256)]
    assert ours == theirs
    assert all(3 <= t < 256 for p in ours for t in p)  # never pad (0) or below


@pytest.mark.parametrize("ids", [[2, 4, 6], [1, 3, 4], [2, 3], [], [5]])
def test_reward_rules_agree(ids):
    expected = float(sum(i % 2 == 0 for i in ids) > len(ids) / 2)
    assert compare.reward_of(np.array(ids, np.int64)) == expected
    assert peer.reward_fn(["p"], [" ".join(map(str, ids))]) == [expected]


def test_id_tokenizer_round_trips_and_never_emits_eos():
    tok = peer.IdTokenizer(eos_id=256)
    assert tok.encode("5 17 3") == [5, 17, 3]
    assert tok.encode(np.array("9 8")) == [9, 8]
    assert tok.decode(np.array([5, 17])) == "5 17"
    assert tok.bos_id() is None and tok.pad_id() == 0 and tok.eos_id() == 256


def _train(tokens_per_s):
    return {
        "tokens_per_s": tokens_per_s,
        "compile_s": 2.0,
        "flops_per_token": 8e9,
        "mfu": tokens_per_s * 8e9 / 1e12,
    }


def test_table_ratio_is_eigen_jax_advantage():
    result = {
        "spec": {"name": "m", "dtype": "bfloat16"},
        "eigen_jax": {
            "grpo": {"step_s": 1.0, "compile_s": 4.0},
            "decode": {"decode_tok_s": 300.0, "generate_tok_s": 200.0, "compile_s": 1.0},
            "train": _train(50.0),
        },
        "tunix": {
            "grpo": {"step_s": 3.0, "compile_s": 2.0},
            "decode": {"decode_tok_s": 100.0, "generate_tok_s": 400.0, "compile_s": 1.0},
            "train": {"tokens_per_s": 100.0, "compile_s": 2.0},
        },
    }
    rows = {r["metric"]: r for r in report.table([result], {"bfloat16": 1e12})}
    ratio = {k: r["ratio"] for k, r in rows.items()}
    assert ratio["GRPO step (s, lower better)"] == pytest.approx(3.0)  # we take 1/3 the time
    assert ratio["GRPO compile+first step (s)"] == pytest.approx(0.5)
    assert ratio["decode tok/s"] == pytest.approx(3.0)
    assert ratio["generate tok/s (prefill+decode)"] == pytest.approx(0.5)
    assert ratio["train-step tokens/s"] == pytest.approx(0.5)
    # MFU of both stacks: same FLOPs per token, same measured peak.
    assert rows["train MFU"]["eigen_jax"] == pytest.approx(0.4)
    assert rows["train MFU"]["tunix"] == pytest.approx(0.8)
    assert rows["train model TFLOP/s"]["eigen_jax"] == pytest.approx(0.4)


def test_table_has_one_train_block_per_attention_impl_and_no_tunix_columns_when_skipped():
    result = {
        "spec": {"name": "m", "dtype": "bfloat16"},
        "eigen_jax": {"train[cudnn]": _train(80.0), "train[xla]": _train(40.0)},
        "tunix": {"skipped": "no Tunix venv (--no_tunix)"},
    }
    rows = {r["metric"]: r for r in report.table([result], {"bfloat16": 1e12})}
    assert rows["train-step tokens/s[cudnn]"]["eigen_jax"] == 80.0
    assert rows["train-step tokens/s[xla]"]["eigen_jax"] == 40.0
    assert rows["train MFU[cudnn]"]["eigen_jax"] == pytest.approx(0.64)
    assert all(r["tunix"] is None and r["ratio"] is None for r in rows.values())


def test_step_times_drop_warmup_and_close_last_step():
    assert peer.step_times([0.0, 5.0, 6.0, 7.5], 9.0, warmup=1) == [1.0, 1.5, 1.5]


def test_eigen_jax_side_runs_on_a_tiny_model():
    from flax import nnx

    from eigen_jax import models

    config = models.get_config("tiny-qwen3", rope_theta=1e6)
    model = models.Transformer(config, rngs=nnx.Rngs(0))
    decode = compare.bench_decode(model, SPEC)
    assert decode["decode_tok_s"] > 0 and decode["generate_tok_s"] > 0
    train = compare.bench_train(model, SPEC, peak=1e12)
    tokens = SPEC["train_batch"] * SPEC["train_seq"]
    assert train["tokens_per_s"] == pytest.approx(tokens / train["step_s"])
    assert train["mfu"] == pytest.approx(train["tokens_per_s"] * train["flops_per_token"] / 1e12)
    grpo = compare.bench_grpo(model, SPEC)
    assert grpo["sequences"] == 4 and grpo["step_s"] > 0


def test_attention_impls_share_the_weights():
    from flax import nnx

    from eigen_jax import models

    model = models.Transformer(models.get_config("tiny-qwen3"), rngs=nnx.Rngs(0))
    other = compare.with_attention(model, "splash")
    assert other.config.attention_impl == "splash" and compare.with_attention(model, None) is model
    leaves = zip(jax.tree.leaves(nnx.state(other)), jax.tree.leaves(nnx.state(model)))
    assert all(a is b for a, b in leaves)
    out = compare.bench_ours(model, dict(SPEC, attention_impls=["xla", "auto"]), ["train"], 1e12)
    assert sorted(out) == ["train[auto]", "train[xla]"]
    assert out["train[auto]"]["flops_per_token"] == out["train[xla]"]["flops_per_token"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("python3.11") is None, reason="needs python3.11 for the venv")
def test_side_by_side_end_to_end(tmp_path):
    """Builds (or reuses) the Tunix venv; the run itself fails if the logits of the two stacks
    on the shared checkpoint disagree."""
    out = tmp_path / "cmp.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    subprocess.run(
        [
            sys.executable,
            os.path.join(BENCH, "compare_tunix.py"),
            "--models",
            "tiny-qwen3",
            "--metrics",
            "decode",
            "--repeats",
            "1",
            "--out",
            str(out),
        ],
        check=True,
        env=env,
        timeout=1200,
    )
    import json

    result = json.loads(out.read_text())
    assert result["results"][0]["logit_max_abs_diff"] < 1e-3
    assert {r["metric"] for r in result["table"]} >= {"decode tok/s"}
