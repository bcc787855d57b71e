"""The declarative checker against tau2-bench's own evaluator (the independent reference)."""

from __future__ import annotations

import pytest

pytest.importorskip("tau2")

from data_agents.checkers.declarative import check_declarative, validate_transcript  # noqa: E402
from data_agents.domains.task import Task  # noqa: E402
from data_agents.domains.tau2_adapter import Tau2Domain  # noqa: E402

from .tau2_trajectories import play, tau2_reward, variants  # noqa: E402

DOMAINS = {name: Tau2Domain(name) for name in ("airline", "retail", "telecom")}


def _agree(domain, task):
    """Check every scripted variant of `task`; return the number of trajectories compared."""
    n = 0
    for name, (actions, text) in variants(domain, task).items():
        env, messages = play(domain, task, actions, text)
        ours = check_declarative(domain, task, env, messages)
        ref = tau2_reward(domain, task, messages)
        assert ours.status != "error", (task.id, name, ours.reason)
        assert ours.reward == ref.reward, (task.id, name, ours, ref.reward_breakdown)
        assert ours.components == {k.value: v for k, v in ref.reward_breakdown.items()}, (
            task.id,
            name,
        )
        if name == "gold":
            assert ours.reward == 1.0, (task.id, ours.reason)
        if domain.name != "telecom" and ref.db_check is not None:  # see declarative.py
            assert (ours.components.get("DB") == 1.0) == ref.db_check.db_match, (task.id, name)
        n += 1
    return n


FAST = [("airline", 7), ("retail", 5), ("telecom", 0), ("telecom", 50), ("telecom", 100)]


@pytest.mark.parametrize("domain_name,index", FAST)
def test_agrees_with_tau2_evaluator_subset(domain_name, index):
    domain = DOMAINS[domain_name]
    task = domain.tasks("base")[index]
    assert _agree(domain, task) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("domain_name", ["retail", "telecom", "airline"])
def test_agrees_with_tau2_evaluator_full_sweep(domain_name):
    """Every base task: the gold replay passes, and on the gold run and every perturbation our
    reward and components equal tau2's (100% agreement). ~100 s for retail and telecom each on
    an idle 2-core CPU, several minutes for airline (tau2 rebuilds its DB per evaluation)."""
    domain = DOMAINS[domain_name]
    tasks = domain.tasks("base")
    n = sum(_agree(domain, task) for task in tasks)
    print(f"{domain_name}: {len(tasks)} tasks, {n} trajectories, 100% agreement")
    assert n >= len(tasks)


@pytest.mark.slow
@pytest.mark.parametrize("domain_name", ["airline", "retail", "telecom"])
def test_gold_replay_passes_on_every_base_task(domain_name):
    """Our checker alone (cheap): the scripted gold dialogue of every base task gets reward 1."""
    domain = DOMAINS[domain_name]
    for task in domain.tasks("base"):
        actions, text = variants(domain, task)["gold"]
        verdict = check_declarative(domain, task, *play(domain, task, actions, text))
        assert verdict.status == "pass", (task.id, verdict.reason)


def test_perturbations_are_caught():
    """The scripted faults really change the outcome (the agreement test is not vacuous)."""
    domain = DOMAINS["retail"]
    task = domain.tasks("base")[0]
    got = {}
    for name, (actions, text) in variants(domain, task).items():
        env, messages = play(domain, task, actions, text)
        got[name] = check_declarative(domain, task, env, messages)
    assert got["gold"].status == "pass" and got["gold"].components == {
        "DB": 1.0,
        "COMMUNICATE": 1.0,
    }
    assert got["drop_write"].status == "fail" and got["drop_write"].components["DB"] == 0.0
    assert got["wrong_arg"].status == "fail"
    assert "DB differs" in got["drop_write"].reason


def test_action_and_communicate_rules():
    task = Task.model_validate(
        {
            "id": "t",
            "user_scenario": {"instructions": "x"},
            "evaluation_criteria": {
                "actions": [
                    {
                        "action_id": "a",
                        "name": "f",
                        "arguments": {"x": 1, "y": 2},
                        "compare_args": ["x"],
                    }
                ],
                "communicate_info": ["Total 1000"],
                "reward_basis": ["ACTION", "COMMUNICATE"],
            },
        }
    )
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "1", "name": "f", "arguments": {"x": 1, "y": 99}}],
    }
    said = {"role": "assistant", "content": "TOTAL 1,000 dollars"}  # commas are stripped
    v = check_declarative(None, task, None, [call, said])
    assert v.status == "pass", v
    wrong_call = {**call, "tool_calls": [{"id": "1", "name": "f", "arguments": {"x": 2}}]}
    v = check_declarative(None, task, None, [wrong_call, said])
    assert v.components == {"ACTION": 0.0, "COMMUNICATE": 1.0}
    v = check_declarative(None, task, None, [{"role": "user", "content": "It costs 1000"}])
    assert v.status == "fail" and v.components == {"ACTION": 0.0, "COMMUNICATE": 0.0}


def test_nl_assertion_is_an_error_and_no_criteria_passes():
    base = {"id": "t", "user_scenario": {"instructions": "x"}}
    task = Task.model_validate(
        {
            **base,
            "evaluation_criteria": {"nl_assertions": ["polite"], "reward_basis": ["NL_ASSERTION"]},
        }
    )
    assert check_declarative(None, task, None, []).status == "error"
    assert check_declarative(None, Task.model_validate(base), None, []).status == "pass"


@pytest.mark.parametrize(
    "bad,needle",
    [
        ("nope", "must be a list"),
        ([{"role": "robot", "content": "x"}], "role 'robot'"),
        ([{"role": "assistant", "content": 3}], "content must be"),
        ([{"role": "assistant", "tool_calls": [{"name": "f", "arguments": "x=1"}]}], "arguments"),
        (
            [{"role": "tool", "content": "x", "tool_calls": [{"name": "f", "arguments": {}}]}],
            "only assistant/user",
        ),
    ],
)
def test_bad_transcripts_name_the_problem(bad, needle):
    with pytest.raises(ValueError, match=needle):
        validate_transcript(bad)
