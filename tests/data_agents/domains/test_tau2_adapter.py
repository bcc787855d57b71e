"""tau2-bench behind our Domain/Environment contracts, checked against tau2's own objects."""

from __future__ import annotations

import pytest

pytest.importorskip("tau2")

from tau2.data_model.tasks import EnvAssertion as Tau2EnvAssertion  # noqa: E402
from tau2.registry import registry  # noqa: E402

from data_agents import domains  # noqa: E402
from data_agents.domains.task import Task  # noqa: E402
from data_agents.domains.tau2_adapter import (  # noqa: E402
    Tau2Domain,
    from_tau2_task,
    to_tau2_messages,
    to_tau2_task,
)

SIZES = {"airline": (50, 30, 20), "retail": (114, 74, 40), "telecom": (114, 74, 40)}


@pytest.fixture(scope="module", params=sorted(SIZES))
def domain(request):
    return domains.load(f"tau2:{request.param}")


def test_registry_and_splits(domain):
    assert isinstance(domain, Tau2Domain)
    base, train, test = SIZES[domain.name]
    assert {"base", "train", "test"} <= set(domain.splits())
    assert [len(domain.tasks(s)) for s in ("base", "train", "test")] == [base, train, test]
    assert domain.policy == registry.get_env_constructor(domain.name)().get_policy()
    assert "user" in domain.user_policy.lower() and domain.has_user_tools == (
        domain.name == "telecom"
    )
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        domain.tasks("dev")


def test_unknown_domain_names_the_known_ones():
    with pytest.raises(ValueError, match="airline, retail, telecom"):
        Tau2Domain("mock")


def test_tasks_round_trip_without_loss(domain):
    originals = registry.get_tasks_loader(domain.name)("base")
    ours = [from_tau2_task(t) for t in originals]
    assert [to_tau2_task(t) for t in ours] == originals
    assert [Task.model_validate(t.to_json()).to_json() for t in ours] == [t.to_json() for t in ours]
    assert [t.to_json() for t in ours] == [
        t.model_dump(mode="json", exclude_none=True) for t in originals
    ]


def test_tools_schema_matches_tau2(domain):
    reference = registry.get_env_constructor(domain.name)()
    env = domain.make_env()
    for side, tools in (
        ("assistant", reference.get_tools()),
        ("user", reference.get_user_tools() if reference.user_tools else []),
    ):
        ours = env.tools_schema(side)
        assert sorted(s["function"]["name"] for s in ours) == sorted(t.name for t in tools)
        assert all(
            s["type"] == "function" and s["function"]["parameters"]["type"] == "object"
            for s in ours
        )
    assert bool(env.tools_schema("user")) == (domain.name == "telecom")


def test_initial_state_matches_tau2(domain):
    """Our cached-DB environment equals tau2's freshly built one after the task's set_state."""
    for task in domain.tasks("base")[:1]:
        reference = registry.get_env_constructor(domain.name)()
        t2 = to_tau2_task(task)
        state = t2.initial_state
        if state is not None:
            reference.set_state(
                state.initialization_data, state.initialization_actions, state.message_history or []
            )
        env = domain.make_env(task)
        assert env.tau2_db_hash("assistant") == reference.get_db_hash()
        assert env.tau2_db_hash("user") == reference.get_user_db_hash()


def test_calls_errors_and_isolation():
    domain = Tau2Domain("retail")
    task = domain.tasks("base")[5]
    env, other = domain.make_env(task), domain.make_env(task)
    assert env.call("no_such_tool", {}).error
    assert env.call("calculate", {"nope": 1}).error
    assert env.call("calculate", "2+2").error  # arguments must be an object
    assert env.call("get_user_details", {}, requestor="user").error  # retail has no user tools
    ok = env.call("calculate", {"expression": "2 + 2"})
    assert not ok.error and ok.content == "4.0"
    assert len(env.call_log) == 5 and env.call_log[-1].result == ok
    before = env.db_hash()
    write = next(a for a in task.evaluation_criteria.actions if env.tool_type(a.name) == "write")
    assert not env.call(write.name, write.arguments).error
    assert env.db_hash() != before and other.db_hash() == before  # envs never share state
    assert env.db_hash("user") == other.db_hash("user")  # no user DB: both None


def test_assertions_and_user_tools_run_through_tau2():
    domain = Tau2Domain("telecom")
    task = next(
        t
        for t in domain.tasks("base")
        if any(a.requestor == "user" for a in t.evaluation_criteria.actions or [])
    )
    env = domain.make_env(task)
    assertions = task.evaluation_criteria.env_assertions
    before = [env.run_assertion(a) for a in assertions]
    for a in task.evaluation_criteria.actions:
        env.call(a.name, a.arguments, a.requestor)
    after = [env.run_assertion(a) for a in assertions]
    assert all(after) and not all(before)
    # the same verdicts straight from tau2's environment object
    direct = [
        env.tau2_env.run_env_assertion(
            Tau2EnvAssertion.model_validate(a.model_dump()), raise_assertion_error=False
        )
        for a in assertions
    ]
    assert direct == after


def test_transcript_conversion():
    msgs = to_tau2_messages(
        [
            {"role": "system", "content": "policy"},
            {
                "role": "user",
                "content": None,
                "tool_calls": [{"id": "u1", "name": "check_status_bar", "arguments": {}}],
            },
            {"role": "tool", "tool_call_id": "u1", "content": "ok"},
            {"role": "assistant", "content": "done"},
        ]
    )
    assert [m.role for m in msgs] == ["system", "user", "tool", "assistant"]
    assert msgs[1].tool_calls[0].requestor == "user" and msgs[2].requestor == "user"
    with pytest.raises(ValueError, match="answers no earlier call"):
        to_tau2_messages([{"role": "tool", "tool_call_id": "x", "content": ""}])
    with pytest.raises(ValueError, match="unknown role"):
        to_tau2_messages([{"role": "robot"}])
