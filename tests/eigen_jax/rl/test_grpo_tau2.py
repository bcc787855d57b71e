"""GRPO on a tau2 domain: one step of `run_grpo` on tau2:telecom, the user simulator acting on its
own device (dual control) in some episodes of each group, the checker rewarding its effect."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tau2")

import gin  # noqa: E402

from data_agents.checkers.verdict import Verdict  # noqa: E402
from data_agents.dialogue import Call, Turn  # noqa: E402
from eigen_jax.rl.config import GRPOConfig  # noqa: E402
from eigen_jax.rl.grpo import run_grpo  # noqa: E402
from eigen_jax.rl.rollout import RolloutConfig  # noqa: E402
from eigen_jax.rl.task_source import TaskSource  # noqa: E402
from eigen_jax.rl.user_sim import UserSimulator  # noqa: E402
from eigen_jax.sampling.config import SamplerConfig  # noqa: E402


class HalfFixingUser(UserSimulator):
    """Even samples turn mobile data off themselves and stop; odd ones ask the agent, then stop."""

    def respond(self, turns):
        out = []
        for t in turns:
            even = int(t.key.rsplit("/", 1)[1]) % 2 == 0
            n = sum(m["role"] == "user" for m in t.messages)
            script = (
                [Turn("", (Call("u1", "toggle_data", {}),)), Turn("Done. ###STOP###")]
                if even
                else [Turn("Please turn my data off."), Turn("Bye ###STOP###")]
            )
            out.append(script[min(n, 1)])
        return out


def data_is_off(domain, task, env, messages):
    """Reward: the user's phone has mobile data off (the effect of the user's own tool)."""
    off = not env.db_state("user")["device"]["data_enabled"]
    return Verdict("pass" if off else "fail", {"DEVICE": float(off)})


@pytest.mark.slow  # a GRPO step compiles the learner (the rollout side is in test_rollout)
def test_grpo_step_on_tau2_telecom(tmp_path, policy_hf_dir):
    from data_agents.domains import load

    telecom = load("tau2:telecom")
    assert telecom.make_env().db_state("user")["device"]["data_enabled"]
    with gin.unlock_config():
        gin.bind_parameter("agent_prompt.mode", "compact")
    try:
        result = run_grpo(
            str(tmp_path),
            policy_hf_dir=str(policy_hf_dir),
            domain=telecom,
            user=HalfFixingUser(),
            num_steps=1,
            algorithm=GRPOConfig(
                tasks_per_step=1, group_size=2, max_extra_rounds=1, learning_rate=1e-3
            ),
            sampler=SamplerConfig(max_len=512, num_slots=4),
            rollout=RolloutConfig(max_new_tokens=32),
            checker=data_is_off,
            task_source=TaskSource(max_tasks=2),
            save_episodes=False,
        )
    finally:
        gin.clear_config()
    assert result["steps"] == 1 and result["learner_updates"] == 1
    m = [
        json.loads(line)
        for line in (tmp_path / "tb" / "metrics.jsonl").read_text().split("\n")
        if line
    ][-1]
    assert m["reward_mean"] == 0.5 and m["informative_group_fraction"] == 1.0
