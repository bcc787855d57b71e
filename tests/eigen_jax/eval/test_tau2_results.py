"""Our evaluation as tau2's Results file: loaded through tau2's own data model, pass^k by tau2's
metrics code equals ours, and tau2's evaluator re-scoring the saved trajectories gives our
rewards."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("tau2")

from tau2.data_model.simulation import Results  # noqa: E402
from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation  # noqa: E402
from tau2.metrics.agent_metrics import compute_metrics  # noqa: E402

from data_agents.checkers import check  # noqa: E402
from data_agents.dialogue import Call, Limits, Turn  # noqa: E402
from data_agents.domains import load  # noqa: E402
from data_agents.domains.tau2_adapter import to_tau2_task  # noqa: E402
from eigen_jax.eval.results import TrialLog, summarize  # noqa: E402
from eigen_jax.eval.served_agent import evaluate_served  # noqa: E402
from eigen_jax.eval.tau2_results import write_tau2_results  # noqa: E402
from eigen_jax.rl.user_sim import UserSimulator  # noqa: E402
from tests.eigen_jax.eval.test_served_agent import TELECOM_TASK  # noqa: E402

FIX = [
    Turn("", (Call("u1", "toggle_data_saver_mode", {}),)),
    Turn("", (Call("u2", "toggle_roaming", {}),)),
]


class MoodyUser(UserSimulator):
    """Fixes its phone in trial 0 and 2 of each task, gives up in trial 1: rewards that differ by
    task and trial, so pass^1 and pass^2 differ."""

    def respond(self, turns):
        out = []
        for t in turns:
            trial = int(t.key.rsplit("/", 1)[1])
            script = (
                [Turn("My mobile data does not work.")]
                + (FIX if trial != 1 else [])
                + [Turn("Thanks. ###STOP###")]
            )
            out.append(script[sum(m["role"] == "user" for m in t.messages)])
        return out


def test_tau2_results_load_and_pass_k_match(text_agent_server, tmp_path):
    url, _ = text_agent_server
    domain = load("tau2:telecom")
    test = domain.tasks("test")
    tasks = [t for t in test if t.id == TELECOM_TASK]
    tasks += [t for t in test if t.id != TELECOM_TASK][:1]
    log = TrialLog(tmp_path / "trials.jsonl")
    trajectories = TrialLog(tmp_path / "trajectories.jsonl")
    asyncio.run(
        evaluate_served(
            url,
            domain,
            tasks,
            MoodyUser(),
            3,
            log,
            check,
            messages_log=trajectories,
            limits=Limits(max_steps=40),
        )
    )
    ours = summarize(log, "tau2:telecom", 3)
    path = write_tau2_results(
        tmp_path,
        domain,
        tasks,
        ours,
        limits=Limits(max_steps=40),
        agent={"llm": "text"},
        user={"kind": "MoodyUser"},
    )
    results = Results.load(path)  # tau2's own data model reads it
    assert len(results.simulations) == 6 and {t.id for t in results.tasks} == {t.id for t in tasks}
    theirs = compute_metrics(results).pass_hat_ks
    assert set(theirs) == {1, 2, 3}
    for k in (1, 2, 3):
        assert theirs[k] == pytest.approx(ours["pass^k"][k])
    assert 0 < ours["pass^k"][2] < ours["pass^k"][1]  # the check is not trivial
    by_id = {t.id: to_tau2_task(t) for t in tasks}
    for sim in results.simulations:
        assert sim.messages[0].role == "assistant"  # tau2's greeting opens every trajectory
        reward = evaluate_simulation(
            sim, by_id[sim.task_id], EvaluationType.ALL, solo_mode=False, domain="telecom"
        ).reward
        assert reward == sim.reward_info.reward  # tau2's evaluator on the saved trajectory


class OneQuestionUser(UserSimulator):
    def respond(self, turns):
        return [
            Turn("I need help with my booking.")
            if not t.messages
            else Turn("Never mind. ###STOP###")
            for t in turns
        ]


@pytest.mark.parametrize("name", ["airline", "retail"])
def test_every_tau2_domain_scores_the_same_on_both_sides(text_agent_server, tmp_path, name):
    """A short served evaluation per domain: tau2's evaluator and metrics on our saved
    trajectories give our rewards and pass^1 (tasks that need no write pass, others fail)."""
    url, _ = text_agent_server
    domain = load(f"tau2:{name}")
    tasks = domain.tasks("test")[:6]
    log = TrialLog(tmp_path / "trials.jsonl")
    asyncio.run(
        evaluate_served(
            url,
            domain,
            tasks,
            OneQuestionUser(),
            1,
            log,
            check,
            messages_log=TrialLog(tmp_path / "trajectories.jsonl"),
        )
    )
    ours = summarize(log, f"tau2:{name}", 1)
    results = Results.load(
        write_tau2_results(
            tmp_path,
            domain,
            tasks,
            ours,
            limits=Limits(),
            agent={"llm": "text"},
            user={"kind": "one"},
        )
    )
    assert compute_metrics(results).pass_hat_ks[1] == pytest.approx(ours["pass^k"][1])
    by_id = {t.id: to_tau2_task(t) for t in tasks}
    for sim in results.simulations:
        reward = evaluate_simulation(
            sim, by_id[sim.task_id], EvaluationType.ALL, solo_mode=False, domain=name
        ).reward
        assert reward == sim.reward_info.reward
