"""Outfitter task generator: determinism, disjoint splits, difficulty coverage, gold replay."""

from __future__ import annotations

import collections

import pytest

from data_agents.domains import load
from data_agents.domains.outfitter import OutfitterDomain
from data_agents.domains.task import Task


@pytest.fixture(scope="module")
def domain() -> OutfitterDomain:
    return load("outfitter")


def _flat(x, prefix=""):
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(_flat(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    return {prefix: x}


def test_splits_are_deterministic_sized_and_disjoint(domain):
    train, test = domain.tasks("train"), domain.tasks("test")
    assert (len(train), len(test)) == (400, 100)
    again = load("outfitter", n_train=50, n_test=100)
    assert [t.to_json() for t in again.tasks("test")] == [t.to_json() for t in test]
    assert [t.to_json() for t in again.tasks("train")] == [t.to_json() for t in train[:50]]
    sig = lambda t: (
        repr([r["text"] for r in t.description["user_script"]["requests"]]),
        repr(t.to_json()["evaluation_criteria"]["actions"]),
    )
    assert not {sig(t) for t in train} & {sig(t) for t in test}
    assert len({t.id for t in train + test}) == 500
    other_seed = load("outfitter", seed=1, n_train=0, n_test=5).tasks("test")
    assert [t.to_json() for t in other_seed] != [t.to_json() for t in test[:5]]


def test_bad_arguments_fail_clearly(domain):
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        domain.tasks("dev")
    with pytest.raises(ValueError, match="n_train must be a non-negative int"):
        load("outfitter", n_train=-1)


def test_difficulty_and_outcome_coverage(domain):
    tasks = domain.tasks("train")
    diffs = collections.Counter(t.description["difficulty"] for t in tasks)
    assert set(diffs) == {"easy", "medium", "hard", "expert"}
    writes = collections.Counter(t.description["n_writes"] for t in tasks)
    assert writes[0] >= 20 and writes[1] > 0 and writes[2] > 0 and writes[3] > 0
    assert sum(n for k, n in writes.items() if k >= 4) > 0
    outcomes = collections.Counter(o for t in tasks for o in t.description["outcomes"])
    for needed in (
        "cancel:active",
        "modify:active",
        "cancel:other_customer",
        "create:over_limit",
        "create:gold_only",
        "create:unavailable",
        "create:too_long",
        "redeem:no_points",
        "transfer:transfer",
        "cancel:decline",
        "create:write",
        "modify:write",
        "address:write",
        "card:write",
        "redeem:write",
    ):
        assert outcomes[needed] > 0, needed
    assert any(t.evaluation_criteria.communicate_info for t in tasks)
    assert any(t.description["user_script"]["opening"].count("R") for t in tasks)  # distractor


def test_tasks_are_tau2_format(domain):
    tau2_tasks = pytest.importorskip("tau2.data_model.tasks")
    for task in domain.tasks("test")[:20]:
        assert Task.model_validate(task.to_json()).to_json() == task.to_json()
        theirs = tau2_tasks.Task.model_validate(task.to_json())
        assert [a.name for a in theirs.evaluation_criteria.actions] == [
            a.name for a in task.evaluation_criteria.actions
        ]
        basis = task.evaluation_criteria.reward_basis
        assert basis == (
            ["DB", "COMMUNICATE"] if task.evaluation_criteria.communicate_info else ["DB"]
        )


def test_gold_replay_changes_the_db_exactly_as_intended(domain):
    """Tools (replaying gold actions) and the generator's own arithmetic must agree."""
    for task in domain.tasks("train")[:150]:
        env = domain.make_env(task)
        before = _flat(env.db_state())
        hash_before = env.db_hash()
        for action in task.evaluation_criteria.actions:
            result = env.call(action.name, action.arguments, action.requestor)
            assert not result.error, (task.id, action.name, result.content)
        after = _flat(env.db_state())
        actual = {k: v for k, v in after.items() if before.get(k) != v}
        assert set(before) <= set(after), task.id
        expected = {
            k: v for k, v in task.description["expected_changes"].items() if before.get(k) != v
        }
        assert actual == expected, task.id
        assert (env.db_hash() != hash_before) == (task.description["n_writes"] > 0), task.id


def test_make_env_applies_the_task_and_keeps_the_base_intact(domain):
    task = domain.tasks("test")[0]
    env = domain.make_env(task)
    customer = next(iter(task.initial_state.initialization_data.agent_data["customers"]))
    assert customer in env.db.customers and customer not in domain.make_env().db.customers
    env.call("update_payment_card", {"customer_id": customer, "card_last4": "0000"})
    assert domain.make_env(task).db_hash() != env.db_hash()


def test_difficulty_filter_keeps_only_requested_tiers():
    from data_agents.domains import load

    dom = load("outfitter", n_train=30, n_test=10, difficulties=["easy", "medium"])
    for split, n in (("train", 30), ("test", 10)):
        tasks = dom.tasks(split)
        assert len(tasks) == n
        assert {t.description["difficulty"] for t in tasks} <= {"easy", "medium"}
    assert {t.id for t in dom.tasks("train")}.isdisjoint({t.id for t in dom.tasks("test")})
    with pytest.raises(ValueError, match="difficulties"):
        load("outfitter", difficulties=["impossible"])
