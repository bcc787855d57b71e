"""pass^k evaluation split across 2 processes (4 fake devices each) against one process.

The (task, trial) jobs are dealt to the processes, each plays its share on its own devices, and
process 0 gathers every trial: the gathered trials and the pass^k table must be the ones a single
process produces for the same checkpoint, user and seed.
"""

import json

import pytest

from tests.eigen_jax.rl.conftest import outfitter, reference_dialogues, rl_tokenizer_dir  # noqa: F401
from tests.eigen_jax.rl.test_grpo_multiprocess import random_policy  # noqa: F401
from tests.fixtures import multiprocess as mp

EVAL = r"""
import argparse, json, gin
ap = argparse.ArgumentParser()
ap.add_argument("out"); ap.add_argument("policy")
ap.add_argument("--coordinator_address"); ap.add_argument("--num_processes", type=int)
ap.add_argument("--process_id", type=int)
a = ap.parse_args()
from eigen_jax import sharding
sharding.initialize_distributed(a.coordinator_address, a.num_processes, a.process_id)
from eigen_jax.eval.evaluate import evaluate_checkpoint
from eigen_jax.rl.rollout import RolloutConfig
from eigen_jax.sampling.config import SamplerConfig
from tests.eigen_jax.rl.test_grpo import StopOnSecondMessage
gin.bind_parameter("agent_prompt.mode", "compact")
evaluate_checkpoint(a.policy, a.out, domain="outfitter", domain_kwargs={"n_train": 24, "n_test": 6},
                    num_trials=2, user=StopOnSecondMessage(),
                    sampler=SamplerConfig(max_len=512, num_slots=8),
                    rollout=RolloutConfig(max_new_tokens=24))
"""


def play(out, policy, processes, devices):
    procs = mp.Processes(
        ["-c", EVAL, str(out), str(policy)], processes, devices, out.parent / f"{out.name}_logs"
    )
    assert procs.wait(timeout=900) == [0] * processes, procs.log(0)[-4000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow  # ~2 min: a 1-process and a 2-process evaluation
def test_two_process_evaluation_gives_the_one_process_pass_k(tmp_path, random_policy):
    one = play(tmp_path / "one", random_policy, 1, 8)
    two = play(tmp_path / "two", random_policy, 2, 4)
    assert two["pass^k"] == one["pass^k"] and two["num_tasks"] == one["num_tasks"] == 6
    trials = lambda wd: sorted(
        (t["task_id"], t["trial"], t["reward"], t["finish_reason"], t["turns"], t["tokens"])
        for t in map(json.loads, (wd / "trials.jsonl").read_text().splitlines())
    )
    assert len(trials(tmp_path / "two")) == 12
    assert trials(tmp_path / "two") == trials(tmp_path / "one")
    shares = [
        [
            json.loads(line)["task_id"]
            for line in (tmp_path / "two" / f"trials.process_{p}_of_2.jsonl")
            .read_text()
            .splitlines()
        ]
        for p in range(2)
    ]
    assert len(shares[0]) == len(shares[1]) == 6  # each process played half of the trials
