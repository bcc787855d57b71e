"""GRPO learner: dynamic filtering refills the batch, the task stream resumes, and a tiny run
executes, trains the policy and exports it."""

import json
from pathlib import Path

import numpy as np
import pytest

from data_agents.checkers.verdict import Verdict
from eigen_jax.rl.config import GRPOConfig
from eigen_jax.rl.episode import Episode
from eigen_jax.rl.grpo import TaskStream, collect_groups, run_grpo
from eigen_jax.rl.rollout import RolloutConfig
from eigen_jax.sampling.config import SamplerConfig


class FakeTask:
    def __init__(self, i):
        self.id = f"task{i}"


class ScriptedWorker:
    """Rewards by task: tasks whose index is a multiple of 3 are informative (one success per
    group), the others all fail. Records which tasks were rolled out."""

    def __init__(self):
        self.rounds, self.timings = [], {"policy_env_s": 0.0, "user_s": 0.0, "reward_s": 0.0}

    def run(self, jobs, seed=0):
        self.rounds.append(sorted({j.task.id for j in jobs}))
        out = []
        for j in jobs:
            informative = int(j.task.id[4:]) % 3 == 0
            reward = float(informative and j.sample_index == 0)
            out.append(
                Episode(
                    j.task.id,
                    j.group_id,
                    j.sample_index,
                    np.arange(4),
                    np.array([0, 0, 1, 1], bool),
                    np.zeros(4),
                    [(2, 4)],
                    reward,
                    "user_stop",
                    [],
                )
            )
        return out


def test_dynamic_filtering_refills_until_batch_is_full():
    stream = TaskStream([FakeTask(i) for i in range(12)], seed=0)
    worker = ScriptedWorker()
    groups, stats = collect_groups(worker, stream, num_groups=3, group_size=4, max_extra_rounds=10)
    assert len(groups) == 3
    assert all(len({e.reward for e in g}) > 1 for g in groups)
    assert all(int(g[0].task_id[4:]) % 3 == 0 for g in groups)
    # each extra round asks only for the groups still missing
    assert [len(r) for r in worker.rounds][0] == 3 and stats["extra_rollout_rounds"] >= 1
    assert stats["extra_rollout_rounds"] == len(worker.rounds) - 1
    played = sum(len(r) for r in worker.rounds)
    assert stats["informative_group_fraction"] == pytest.approx(3 / played)


def test_filtering_gives_up_after_bounded_rounds_and_can_be_off():
    tasks = [FakeTask(i) for i in (1, 2, 4, 5)]  # never informative
    worker = ScriptedWorker()
    groups, stats = collect_groups(worker, TaskStream(tasks, 0), 2, 4, max_extra_rounds=2)
    assert groups == [] and len(worker.rounds) == 3 and stats["extra_rollout_rounds"] == 2
    groups, stats = collect_groups(
        ScriptedWorker(), TaskStream(tasks, 0), 2, 4, dynamic_filtering=False
    )
    assert len(groups) == 2 and stats["extra_rollout_rounds"] == 0


def test_task_stream_is_reproducible_and_resumable():
    tasks = [FakeTask(i) for i in range(5)]
    a = TaskStream(tasks, seed=3)
    first = [t.id for t in a.take(7)]
    assert sorted(first[:5]) == sorted(t.id for t in tasks)  # an epoch is a permutation
    b = TaskStream(tasks, seed=3)
    b.set_state(a.get_state())
    assert [t.id for t in a.take(6)] == [t.id for t in b.take(6)]
    with pytest.raises(ValueError, match="empty"):
        TaskStream([], 0)


def mixed_checker(domain, task, env, transcript):
    """Stand-in checker with mixed rewards in every group whatever a tiny policy samples: an
    episode passes iff the user hung up before the agent spoke (see `StopOnSecondMessage`)."""
    return Verdict("fail" if any(m["role"] == "assistant" for m in transcript) else "pass")


class StopOnSecondMessage:
    """Even samples of a group: the user hangs up at once (scored, no policy turn). Odd samples:
    the user states a request, then ends the dialogue at the agent's first plain reply. So every
    group holds passes and fails (informative), and the odd samples carry policy tokens to train."""

    def respond(self, turns):
        out = []
        for t in turns:
            even = int(t.key.rsplit("/", 1)[1]) % 2 == 0
            out.append("###STOP###" if t.messages or even else "Can I extend my rental?")
        return out


def test_tiny_grpo_step_trains_and_exports(tmp_path, policy_hf_dir, outfitter):
    import gin

    from eigen_jax import models

    with gin.unlock_config():
        gin.bind_parameter("agent_prompt.mode", "compact")
    lr, wd = 1e-3, 0.01
    try:
        result = run_grpo(
            str(tmp_path),
            policy_hf_dir=str(policy_hf_dir),
            domain=outfitter,
            user=StopOnSecondMessage(),
            num_steps=1,
            algorithm=GRPOConfig(
                tasks_per_step=2, group_size=4, max_extra_rounds=3, learning_rate=lr
            ),
            sampler=SamplerConfig(max_len=512, num_slots=8),
            rollout=RolloutConfig(max_new_tokens=64, temperature=0.8),
            checker=mixed_checker,
        )
    finally:
        gin.clear_config()
    assert result["steps"] == 1 and result["learner_updates"] == 1
    # the export records the prompt format it was trained with (the server renders by it)
    fmt = json.loads((Path(result["hf_dir"]) / "prompt_format.json").read_text())
    assert fmt["agent_prompt"] == "compact" and fmt["tool_parser"] == "hermes"
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["reward_curve"] == [list(x) for x in result["reward_curve"]]
    metrics = [
        json.loads(line)
        for line in (tmp_path / "tb" / "metrics.jsonl").read_text().split("\n")
        if line
    ]
    m = metrics[-1]
    for key in (
        "reward_mean",
        "informative_group_fraction",
        "extra_rollout_rounds",
        "policy_tokens",
        "clip_fraction",
        "is_mask_fraction",
        "kl",
        "entropy",
        "episode_length",
        "episode_turns",
        "rollout_s",
        "update_s",
    ):
        assert key in m, key
    assert m["policy_tokens"] > 0 and m["entropy"] > 0
    assert m["clip_fraction"] == 0.0  # μ = 1: ρ = 1 exactly on the single pass
    finishes = {k: v for k, v in m.items() if k.startswith("finish_")}
    assert abs(sum(finishes.values()) - 1.0) < 1e-6, finishes  # every episode ends one way
    transcripts = [json.loads(x) for x in (tmp_path / "transcripts.jsonl").read_text().splitlines()]
    assert 1 <= len(transcripts) <= 2 and all(t["step"] == 1 for t in transcripts)
    assert all(
        t["messages"] and all("role" in m for m in t["messages"]) and t["reward"] in (0.0, 1.0)
        for t in transcripts
    )
    before, _ = models.from_pretrained(str(policy_hf_dir))
    after, _ = models.from_pretrained(result["hf_dir"])
    import jax
    from flax import nnx

    p0 = jax.tree.leaves(nnx.state(before, nnx.Param))
    p1 = jax.tree.leaves(nnx.state(after, nnx.Param))
    # changed beyond AdamW's decoupled weight decay alone: the policy gradient moved it
    moved = max(
        float(np.abs(np.asarray(b) - np.asarray(a) * (1 - lr * wd)).max()) for a, b in zip(p0, p1)
    )
    assert moved > 1e-4


@pytest.mark.slow
def test_resume_continues_the_run(tmp_path, policy_hf_dir, outfitter):
    """A second call with more steps restores the checkpoint (state, task cursor, curve) and
    continues from there instead of starting over."""
    import gin

    with gin.unlock_config():
        gin.bind_parameter("agent_prompt.mode", "compact")
    kwargs = dict(
        policy_hf_dir=str(policy_hf_dir),
        domain=outfitter,
        user=StopOnSecondMessage(),
        algorithm=GRPOConfig(tasks_per_step=2, group_size=4, max_extra_rounds=1),
        sampler=SamplerConfig(max_len=512, num_slots=8),
        rollout=RolloutConfig(max_new_tokens=64, temperature=0.8),
        checker=mixed_checker,
        checkpoint_every=1,
    )
    try:
        first = run_grpo(str(tmp_path), num_steps=1, **kwargs)
        second = run_grpo(str(tmp_path), num_steps=2, **kwargs)
    finally:
        gin.clear_config()
    assert second["steps"] == 2 and len(second["reward_curve"]) == 2
    assert second["reward_curve"][0] == list(first["reward_curve"][0])
    assert second["learner_updates"] >= first["learner_updates"]
    assert second["seconds"] > first["seconds"] - 1.0  # the whole run's time, not the last part


def test_moe_policy_trains_with_router_metrics(tmp_path, rl_chat, rl_tokenizer_dir, outfitter):
    """A Qwen3-MoE policy checkpoint through a GRPO step with the load-balancing loss on: the
    router's expert load reaches the metrics log, and the exported checkpoint is an MoE one."""
    import shutil

    import gin
    from flax import nnx

    from eigen_jax import models

    config = models.get_config(
        "tiny-qwen3-moe", vocab_size=len(rl_chat.tokenizer), max_position_embeddings=4096
    )
    policy = tmp_path / "policy"
    models.save_pretrained(models.Transformer(config, rngs=nnx.Rngs(0)), config, str(policy))
    for f in rl_tokenizer_dir.iterdir():
        shutil.copy(f, policy / f.name)
    with gin.unlock_config():
        gin.bind_parameter("agent_prompt.mode", "compact")
    try:
        result = run_grpo(
            str(tmp_path / "run"),
            policy_hf_dir=str(policy),
            domain=outfitter,
            user=StopOnSecondMessage(),
            num_steps=1,
            algorithm=GRPOConfig(
                tasks_per_step=2, group_size=4, max_extra_rounds=3, router_aux_loss_coef=0.01
            ),
            sampler=SamplerConfig(max_len=512, num_slots=8),
            rollout=RolloutConfig(max_new_tokens=16),
            checker=mixed_checker,
        )
    finally:
        gin.clear_config()
    assert result["learner_updates"] == 1
    m = json.loads((tmp_path / "run" / "tb" / "metrics.jsonl").read_text().split("\n")[-2])
    assert m["router/max_load"] >= 1.0 >= m["router/min_load"] and m["router/aux_loss"] > 0
    assert models.from_pretrained(result["hf_dir"])[1].family == "qwen3_moe"


def test_out_of_range_counts_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"run_grpo\.num_steps must be >= 1"):
        run_grpo(str(tmp_path), policy_hf_dir=str(tmp_path / "missing"), num_steps=0)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SamplerConfig(num_slots=0), r"SamplerConfig\.num_slots must be >= 1"),
        (lambda: SamplerConfig(max_len=1), r"SamplerConfig\.max_len must be >= 2"),
        (lambda: RolloutConfig(max_new_tokens=-3), r"RolloutConfig\.max_new_tokens must be >= 1"),
        (lambda: GRPOConfig(group_size=1), r"GRPOConfig\.group_size must be >= 2"),
        (lambda: GRPOConfig(loss="nope"), r"GRPOConfig\.loss must be one of"),
        (lambda: GRPOConfig(layout="rows"), r"GRPOConfig\.layout must be one of"),
        (lambda: GRPOConfig(is_cap=0.0), r"GRPOConfig\.is_cap must be > 0 or None"),
    ],
)
def test_configs_refuse_out_of_range_values(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_run_grpo_with_lora_exports_adapter_and_merged_policy(tmp_path, policy_hf_dir, outfitter):
    """`run_grpo(lora=...)` with the KL term on: one update, the PEFT adapter and the merged
    policy exported, and merged = the SFT policy + that adapter."""
    import gin

    from eigen_jax import models
    from eigen_jax.models import lora_io
    from eigen_jax.models.lora import LoraConfig

    with gin.unlock_config():
        gin.bind_parameter("agent_prompt.mode", "compact")
    try:
        result = run_grpo(
            str(tmp_path),
            policy_hf_dir=str(policy_hf_dir),
            domain=outfitter,
            user=StopOnSecondMessage(),
            num_steps=1,
            algorithm=GRPOConfig(
                tasks_per_step=2, group_size=4, max_extra_rounds=3, learning_rate=1e-2, kl_coef=0.05
            ),
            sampler=SamplerConfig(max_len=512, num_slots=8),
            rollout=RolloutConfig(max_new_tokens=64, temperature=0.8),
            checker=mixed_checker,
            lora=LoraConfig(rank=4, alpha=8, dropout=0.1),
        )
    finally:
        gin.clear_config()
    assert result["learner_updates"] == 1
    base, _ = models.from_pretrained(str(policy_hf_dir))
    merged, _ = models.from_pretrained(result["hf_dir"])
    again = lora_io.merge_adapters(lora_io.load_adapter(base, result["adapter_dir"]))
    ids = np.arange(1, 25, dtype=np.int32)[None]
    np.testing.assert_allclose(np.asarray(again(ids)), np.asarray(merged(ids)), atol=1e-5)
    assert np.abs(np.asarray(base(ids)) - np.asarray(merged(ids))).max() > 1e-4
