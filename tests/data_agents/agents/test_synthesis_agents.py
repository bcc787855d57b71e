"""Planner, task synthesiser and task verifier against canned responses."""

import asyncio
import json

import pytest

from data_agents.agents import (
    Sampling,
    StageFailure,
    make_plans,
    synthesize_task,
    verify_task,
)
from data_agents.agents.task_synth import read_tool_schemas
from data_agents.domains import load
from data_agents.domains.outfitter.tools import AGENT_TOOLS
from data_agents.prompts import PromptStore, seed_plans
from tests.data_agents.agents.fake_llm import PLAN, FakeLLM, completion

S = Sampling(0.5, 64)


@pytest.fixture(scope="module")
def domain():
    return load("outfitter", n_train=0, n_test=0)


@pytest.fixture
def prompts(tmp_path):
    return PromptStore(tmp_path).get("v0")


def run(coro):
    return asyncio.run(coro)


def test_planner_valid_output(domain, prompts):
    out = run(make_plans(FakeLLM(), domain, prompts, 3, sampling=S, cache_tag="p"))
    assert out["plans"] == [PLAN] * 3 and out["sources"] == ["llm"] * 3 and not out["failures"]


@pytest.mark.parametrize(
    "reply, category",
    [
        ("I cannot help with that.", "invalid_json"),
        ('{"plans": [{"synthesis": {"complexity_tier": "godlike"}}]}', "schema"),
        ('{"plans": []}', "schema"),
    ],
)
def test_planner_bad_output_falls_back_to_seed_plans(domain, prompts, reply, category):
    llm = FakeLLM({"planner": lambda m, t, g: completion(reply)})
    out = run(make_plans(llm, domain, prompts, 5, sampling=S, cache_tag="p"))
    seeds = seed_plans()
    assert out["plans"] == [seeds[i % len(seeds)] for i in range(5)]
    assert out["sources"] == ["seed"] * 5
    assert [f["category"] for f in out["failures"]] == [category, category]  # both attempts
    assert len({c[3] for c in llm.calls}) == 2  # distinct cache tags per attempt


def test_synth_explores_with_read_tools_only_and_emits_tau2_task(domain, prompts):
    llm = FakeLLM()
    res = run(
        synthesize_task(
            llm, domain, PLAN, prompts, task_id="t1", sampling=S, max_steps=4, cache_tag="k"
        )
    )
    read = {t.name for t in AGENT_TOOLS if t.kind == "read"}
    offered = {s["function"]["name"] for s in llm.calls[0][2]}
    assert offered == read and "update_payment_card" not in offered
    task = res.task
    assert task.id == "t1" and res.tool_calls == 1
    assert task.evaluation_criteria.actions[0].name == "update_payment_card"
    assert task.evaluation_criteria.reward_basis == ["DB", "COMMUNICATE"]
    assert task.user_scenario.instructions.reason_for_call == "new card"
    # the tool result the synthesiser saw is the environment's own answer
    assert json.loads(res.exploration[3]["content"])["customer_id"] == "C100"


def test_synth_refuses_write_tools_during_exploration(domain, prompts):
    def sneaky(messages, tools, tag):
        if messages[-1]["role"] == "user":
            return completion(None, [("cancel_rental", {"rental_id": "R2000"})])
        assert "not a read tool" in messages[-1]["content"]
        return completion("still no task")

    with pytest.raises(StageFailure) as e:
        run(
            synthesize_task(
                FakeLLM({"task_synth": sneaky}),
                domain,
                PLAN,
                prompts,
                task_id="t",
                sampling=S,
                max_steps=3,
                cache_tag="k",
            )
        )
    assert e.value.category == "invalid_json"


@pytest.mark.parametrize(
    "script, category",
    [
        (
            lambda m, t, g: completion(None, [("get_customer", {"customer_id": "C100"})]),
            "exploration_budget",
        ),
        (lambda m, t, g: completion('{"reason_for_call": "x"}'), "schema"),
        (
            lambda m, t, g: completion(
                '{"reason_for_call": "x", "task_instructions": "y", '
                '"env_assertions": [{"func_name": "f", "env_type": "robot"}]}'
            ),
            "schema",
        ),
    ],
)
def test_synth_failures_are_recorded(domain, prompts, script, category):
    with pytest.raises(StageFailure) as e:
        run(
            synthesize_task(
                FakeLLM({"task_synth": script}),
                domain,
                PLAN,
                prompts,
                task_id="t",
                sampling=S,
                max_steps=2,
                cache_tag="k",
            )
        )
    assert e.value.category == category and e.value.attribution == "task"


def _task(domain, prompts, actions, checker=None, communicate=()):
    body = {
        "reason_for_call": "r",
        "task_instructions": "i",
        "actions": actions,
        "communicate_info": list(communicate),
        "checker_source": checker,
    }
    llm = FakeLLM({"task_synth": lambda m, t, g: completion(json.dumps(body))})
    return run(
        synthesize_task(
            llm, domain, PLAN, prompts, task_id="t", sampling=S, max_steps=1, cache_tag="k"
        )
    ).task


CARD = {"name": "update_payment_card", "arguments": {"customer_id": "C100", "card_last4": "1111"}}


def test_verify_accepts_executable_write_task(domain, prompts):
    task = _task(domain, prompts, [CARD])
    facts = run(verify_task(FakeLLM(), domain, task, prompts, sampling=S, cache_tag="v"))
    assert facts["db_changed"] and facts["writes"] == 1
    # independent check: the same call on a fresh env changes the card
    env = domain.make_env(task)
    env.call(**{k: CARD[k] for k in ("name", "arguments")})
    assert env.db_state()["customers"]["C100"]["card_last4"] == "1111"


@pytest.mark.parametrize(
    "actions, checker, category",
    [
        ([{"name": "no_such_tool", "arguments": {}}], None, "unknown_tool"),
        ([{"name": "cancel_rental", "arguments": {"rental_id": "R0"}}], None, "gold_action_error"),
        (
            [
                {
                    "name": "update_payment_card",
                    "arguments": {"customer_id": "C100", "card_last4": "4827"},
                }
            ],
            None,
            "no_db_change",
        ),  # C100's card already ends in 4827
        ([], None, "trivial_task"),
        ([CARD], "def check(a, b):\n    return True", "checker_invalid"),
        ([CARD], "import os; os.system('rm -rf /')", "checker_invalid"),
        ([CARD], "def check(:", "checker_invalid"),
    ],
)
def test_verify_rejects_broken_tasks(domain, prompts, actions, checker, category):
    task = _task(domain, prompts, actions, checker)
    llm = FakeLLM()
    with pytest.raises(StageFailure) as e:
        run(verify_task(llm, domain, task, prompts, sampling=S, cache_tag="v"))
    assert e.value.category == category and e.value.attribution == "task"
    assert not llm.calls  # the judge is not paid for a task that does not execute


@pytest.mark.parametrize(
    "reply, category",
    [
        (
            '{"policy_consistent": false, "solvable": true, "reason": "skips confirmation"}',
            "judge_rejected",
        ),
        ('{"policy_consistent": "yes", "solvable": true}', "schema"),
        ("Looks good to me!", "invalid_json"),
    ],
)
def test_verify_judge(domain, prompts, reply, category):
    task = _task(domain, prompts, [CARD])
    llm = FakeLLM({"task_verify": lambda m, t, g: completion(reply)})
    with pytest.raises(StageFailure) as e:
        run(verify_task(llm, domain, task, prompts, sampling=S, cache_tag="v"))
    assert e.value.category == category


def test_read_tool_schemas_match_tool_kinds(domain):
    names = {s["function"]["name"] for s in read_tool_schemas(domain)}
    assert names == {t.name for t in AGENT_TOOLS if t.kind == "read"}


ADDRESS = {
    "name": "update_address",
    "arguments": {"customer_id": "C100", "street": "5 Elm Dr", "city": "Moab", "zip": "84532"},
}
LOOKUP = {"name": "get_customer", "arguments": {"customer_id": "C100"}}
CARD_SET = 'final_db["customers"]["C100"]["card_last4"] == "1111"'
ZIP_SET = 'final_db["customers"]["C100"]["address"]["zip"] == "84532"'


def _checker(expr: str) -> str:
    return f"def check(initial_db, final_db, transcript):\n    return {expr}\n"


@pytest.mark.parametrize(
    "actions, expr, category, needle",
    [
        ([CARD], "True", "checker_vacuous", "unmodified initial state"),
        ([CARD], "final_db == final_db", "checker_vacuous", "unmodified initial state"),
        ([LOOKUP, CARD], "len(transcript) > 0", "checker_vacuous", "without its last write"),
        ([ADDRESS, CARD], ZIP_SET, "checker_vacuous", "update_payment_card"),  # card never checked
        (
            [CARD],
            'final_db["customers"]["C100"]["card_last4"] == "9999"',
            "checker_fails_on_gold",
            "does not pass the gold replay: fail",
        ),
        ([CARD], "1 / 0", "checker_fails_on_gold", "does not pass the gold replay: error"),
    ],
)
def test_verify_rejects_checkers_that_cannot_tell_outcomes_apart(
    domain, prompts, actions, expr, category, needle
):
    """Each checker is run in the sandbox on the gold replay, the initial state and a partial
    replay; the expected outcome of each is worked out by hand from the expression."""
    task = _task(domain, prompts, actions, _checker(expr))
    llm = FakeLLM()
    with pytest.raises(StageFailure) as e:
        run(verify_task(llm, domain, task, prompts, sampling=S, cache_tag="v"))
    assert (e.value.category, e.value.attribution) == (category, "task")
    assert needle in e.value.reason, e.value.reason
    assert not llm.calls


@pytest.mark.parametrize(
    "actions, expr",
    [
        ([CARD], CARD_SET),
        ([LOOKUP, CARD], CARD_SET + " and len(transcript) == 4"),
        ([ADDRESS, CARD], f"{ZIP_SET} and {CARD_SET}"),
        ([ADDRESS, CARD], "final_db != initial_db and " + CARD_SET),
    ],
)
def test_verify_keeps_genuine_checkers(domain, prompts, actions, expr):
    task = _task(domain, prompts, actions, _checker(expr))
    facts = run(verify_task(FakeLLM(), domain, task, prompts, sampling=S, cache_tag="v"))
    assert facts["writes"] == sum(a["name"] != "get_customer" for a in actions)
