"""A GRPO step in 2 processes (4 fake devices each) against one process on the same episodes.

Each process rolls out its own share of the step's tasks on its own devices and saves the groups
it kept (`run_grpo(save_episodes=True)`); the shares must be disjoint and cover the step's tasks,
and the step's loss (at the starting weights) must equal the loss one process computes on the
union of those episodes with the same learner.
"""

import json
import pickle

import numpy as np
import pytest

from eigen_jax.rl.config import GRPOConfig
from eigen_jax.rl.rollout import RolloutConfig
from eigen_jax.sampling.config import SamplerConfig
from tests.fixtures import multiprocess as mp

STEP = r"""
import argparse, gin
ap = argparse.ArgumentParser()
ap.add_argument("workdir"); ap.add_argument("policy")
ap.add_argument("--coordinator_address"); ap.add_argument("--num_processes", type=int)
ap.add_argument("--process_id", type=int)
a = ap.parse_args()
from eigen_jax import sharding
sharding.initialize_distributed(a.coordinator_address, a.num_processes, a.process_id)
from data_agents import domains
from eigen_jax.rl.config import GRPOConfig
from eigen_jax.rl.grpo import run_grpo
from eigen_jax.rl.rollout import RolloutConfig
from eigen_jax.sampling.config import SamplerConfig
from tests.eigen_jax.rl.test_grpo import StopOnSecondMessage, mixed_checker
gin.bind_parameter("agent_prompt.mode", "compact")
run_grpo(a.workdir, policy_hf_dir=a.policy, domain=domains.load("outfitter", n_train=24, n_test=4),
         user=StopOnSecondMessage(), checker=mixed_checker, **KWARGS)
"""
ALGORITHM = GRPOConfig(
    tasks_per_step=4, group_size=2, dynamic_filtering=False, learning_rate=1e-3, share_prefix=False
)
KWARGS = dict(
    num_steps=1,
    algorithm=ALGORITHM,
    sampler=SamplerConfig(max_len=512, num_slots=8),
    rollout=RolloutConfig(max_new_tokens=32, temperature=1.0),
    save_episodes=True,
    export_hf=False,
)


@pytest.fixture(scope="module")
def random_policy(tmp_path_factory, rl_tokenizer_dir):
    """A random tiny qwen3 policy (the split and the loss need no trained one)."""
    import shutil

    from eigen_jax import models
    from eigen_jax import sharding as shd
    from eigen_jax.train.model_init import init_model

    out = tmp_path_factory.mktemp("random_policy")
    model, config = init_model(shd.make_mesh((1, -1, 1)), preset="tiny-qwen3", vocab_size=512)
    models.save_pretrained(model, config, str(out))
    for f in rl_tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out


def reference_loss(policy_dir, groups):
    """The learner of `run_grpo` (same optimizer, loss, layout) on `groups` in this process."""
    from eigen_jax import models
    from eigen_jax import sharding as shd
    from eigen_jax.rl.learner import GRPOLearner

    mesh = shd.make_mesh((1, -1, 1))
    model, config = models.from_pretrained(str(policy_dir), mesh=mesh)
    state, learner = GRPOLearner.create(
        model,
        config,
        mesh,
        ALGORITHM,
        num_steps=1,
        max_len=KWARGS["sampler"].max_len,
        temperature=1.0,
        shape_slack=1.0,
    )
    _, out = learner.update(state, groups)
    return out


@pytest.mark.slow  # ~2-3 min: two processes compile sampler and learner
def test_two_processes_split_the_episodes_and_give_the_one_process_loss(
    tmp_path, random_policy, outfitter
):
    from eigen_jax.rl.grpo import TaskStream

    wd = tmp_path / "grpo"
    code = STEP.replace("**KWARGS", ", ".join(f"{k}={v!r}" for k, v in KWARGS.items()))
    procs = mp.Processes(["-c", code, str(wd), str(random_policy)], 2, 4, tmp_path / "logs")
    assert procs.wait(timeout=900) == [0, 0], procs.log(0)[-4000:] + procs.log(1)[-4000:]
    shares = [
        pickle.loads((wd / "episodes" / f"step_00001.process_{p}.pkl").read_bytes())
        for p in range(2)
    ]
    keys = [{(g[0].task_id, g[0].group_id) for g in share} for share in shares]
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    step_tasks = TaskStream(outfitter.tasks("train"), seed=0).take(ALGORITHM.tasks_per_step)
    assert keys[0] | keys[1] == {(t.id, i) for i, t in enumerate(step_tasks)}
    for share in shares:
        for g in share:
            assert len(g) == ALGORITHM.group_size and len({e.task_id for e in g}) == 1
    logged = [json.loads(line) for line in (wd / "tb" / "metrics.jsonl").read_text().splitlines()][
        -1
    ]
    want = reference_loss(random_policy, shares[0] + shares[1])
    print("2-process loss", logged["loss"], "1-process loss", want["loss"])
    assert logged["policy_tokens"] == want["policy_tokens"] > 0
    assert logged["episodes"] == ALGORITHM.tasks_per_step * ALGORITHM.group_size
    np.testing.assert_allclose(logged["loss"], want["loss"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(logged["pg_loss"], want["pg_loss"], rtol=1e-5, atol=1e-7)
    # the forward (entropy) and the backward (gradient norm) over the global batch agree too
    print(
        "grad norm",
        logged["grad_norm"],
        want["grad_norm"],
        "entropy",
        logged["entropy"],
        want["entropy"],
    )
    np.testing.assert_allclose(logged["grad_norm"], want["grad_norm"], rtol=1e-4)
    np.testing.assert_allclose(logged["entropy"], want["entropy"], rtol=1e-5)
