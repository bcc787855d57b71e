"""A Qwen3-MoE checkpoint through the serving stack (HTTP greedy generation against the sampler
on the same checkpoint loaded separately) and through pass^k evaluation."""

import json
import shutil

import numpy as np
import pytest

from eigen_jax.sampling import SamplingParams, generate
from tests.eigen_jax.serve.conftest import VOCAB
from tests.eigen_jax.serve.test_app import PROMPTS, _generate_all, run


@pytest.fixture(scope="module")
def moe_checkpoint(serve_checkpoint, tmp_path_factory):
    from tests.fixtures.tiny_hf import make_tiny_hf_checkpoint

    ckpt = tmp_path_factory.mktemp("serve_moe") / "tiny-qwen3-moe"
    make_tiny_hf_checkpoint(
        str(ckpt), "qwen3_moe", vocab_size=VOCAB, eos_token_id=2, bos_token_id=1
    )
    for f in serve_checkpoint.iterdir():  # the tokenizer files beside the weights
        if not f.name.startswith(("model", "config", "generation_config")):
            shutil.copy(f, ckpt / f.name)
    return ckpt


def test_served_moe_greedy_matches_the_sampler(moe_checkpoint):
    from eigen_jax import models
    from eigen_jax.serve import BackgroundServer, ModelServer

    reference, config = models.from_pretrained(str(moe_checkpoint))
    assert config.family == "qwen3_moe"
    ref = generate(reference, PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=10))
    server = ModelServer.load(str(moe_checkpoint), num_slots=4, max_len=256, steps_per_sync=4)
    try:
        with BackgroundServer(server) as background:
            outs = run(
                _generate_all(
                    background.url,
                    PROMPTS,
                    {"temperature": 0, "max_new_tokens": 10, "ignore_eos": True},
                    False,
                )
            )
    finally:
        server.close()
    for out, expected in zip(outs, ref):
        assert out.output_ids == expected.token_ids.tolist()
        np.testing.assert_allclose(out.output_logprobs, expected.logprobs, atol=2e-4)


def test_moe_checkpoint_is_evaluated(moe_checkpoint, tmp_path):
    import gin

    from eigen_jax.eval.evaluate import evaluate_checkpoint

    with gin.unlock_config():
        gin.bind_parameter("agent_prompt.mode", "compact")
    from eigen_jax.rl.rollout import RolloutConfig
    from eigen_jax.sampling.config import SamplerConfig

    try:
        result = evaluate_checkpoint(
            str(moe_checkpoint),
            str(tmp_path),
            max_tasks=2,
            num_trials=1,
            sampler=SamplerConfig(num_slots=4, max_len=1024, max_prefill_len=512),
            rollout=RolloutConfig(max_new_tokens=16),
        )
    finally:
        gin.clear_config()
    trials = [
        json.loads(line)
        for line in (tmp_path / "trials.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert len(trials) == 2 and all(t["reward"] in (0.0, 1.0) for t in trials)
    assert all(t["turns"] > 0 and t["finish_reason"] != "max_context" for t in trials), trials
    assert result["pass^k"][1] == np.mean([t["reward"] for t in trials])
    # tau2's Results file beside ours: tau2's data model loads it, its pass^k is ours
    from tau2.data_model.simulation import Results
    from tau2.metrics.agent_metrics import compute_metrics

    tau2_results = Results.load(tmp_path / "tau2_results.json")
    assert len(tau2_results.simulations) == 2
    assert compute_metrics(tau2_results).pass_hat_ks[1] == pytest.approx(result["pass^k"][1])
