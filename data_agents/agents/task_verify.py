"""Task verifier: executable checks first, then an LLM judge for policy consistency/solvability.

Why both: execution catches what is mechanically wrong (a gold action that errors on a fresh
environment, a "write" task whose actions leave the database unchanged, an unknown tool, a code
checker that does not even define `check`, or one that cannot tell success from failure); the
judge catches what execution cannot (a gold outcome the policy forbids, a user who lacks the
information to get there). Cheap checks run first so the judge is only paid for tasks that execute.
"""

from __future__ import annotations

import ast
import asyncio
from typing import Any

import pydantic

from data_agents.agents.base import ChatLLM, Sampling, chat, tool_kinds
from data_agents.agents.parsing import StageFailure, first_message, parse_model
from data_agents.checkers import run_code_checker
from data_agents.domains.base import Domain
from data_agents.domains.task import Task
from data_agents.env import Environment
from data_agents.prompts import PromptSet

STAGE = "task_verify"


class TaskJudgement(pydantic.BaseModel):
    policy_consistent: pydantic.StrictBool  # "yes"/1 are not verdicts
    solvable: pydantic.StrictBool  # "yes"/1 are not verdicts
    reason: str = ""


def check_checker_source(source: str) -> None:
    """A code checker must parse and define `check(initial_db, final_db, transcript)`."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise StageFailure(
            STAGE, "checker_invalid", f"checker source does not parse: {e}"
        ) from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            if len(node.args.args) != 3:
                raise StageFailure(
                    STAGE,
                    "checker_invalid",
                    f"check() takes {len(node.args.args)} arguments, expected 3 "
                    "(initial_db, final_db, transcript)",
                )
            return
    raise StageFailure(STAGE, "checker_invalid", "checker source defines no top-level check()")


def execute_gold(domain: Domain, task: Task) -> dict[str, Any]:
    """Replay the gold actions on a fresh environment; raise StageFailure on any problem.

    Returns {"db_changed": bool, "writes": int} for the judge and the report.
    """
    return replay_gold(domain, task)[2]


def replay_gold(
    domain: Domain, task: Task
) -> tuple[Environment, list[dict[str, Any]], dict[str, Any]]:
    """`execute_gold`, also returning the final environment and the replay as a transcript (one
    tool-calling message and its result per gold action), which the code checker is probed on."""
    env = domain.make_env(task)
    criteria = task.evaluation_criteria
    actions = list(criteria.actions or []) if criteria else []
    if not actions and not (criteria and (criteria.communicate_info or criteria.env_assertions)):
        raise StageFailure(
            STAGE,
            "trivial_task",
            "task has no gold actions, nothing to "
            "communicate and no assertions: every dialogue would pass",
        )
    known = {
        side: {s["function"]["name"] for s in env.tools_schema(side)}
        for side in ("assistant", "user")
    }
    kinds = tool_kinds(env)
    before = (env.db_hash("assistant"), env.db_hash("user"))
    writes = 0
    transcript: list[dict[str, Any]] = []
    for i, a in enumerate(actions):
        if a.name not in known[a.requestor]:
            raise StageFailure(
                STAGE, "unknown_tool", f"gold action {a.name!r} is not a {a.requestor} tool"
            )
        result = env.call(a.name, a.arguments, a.requestor)
        if result.error:
            raise StageFailure(
                STAGE,
                "gold_action_error",
                f"gold action {a.name}({a.arguments}) failed: {result.content[:300]}",
            )
        writes += kinds.get(a.name) == "write"
        transcript += _call_messages(f"gold{i}", a, result.content)
    changed = before != (env.db_hash("assistant"), env.db_hash("user"))
    if writes and not changed:
        raise StageFailure(
            STAGE, "no_db_change", f"{writes} write action(s) left the database unchanged"
        )
    for assertion in (criteria.env_assertions or []) if criteria else []:
        try:
            holds = env.run_assertion(assertion)
        except Exception as e:  # noqa: BLE001 - an unknown assertion is the task's fault
            raise StageFailure(
                STAGE,
                "assertion_invalid",
                f"assertion {assertion.func_name}: {type(e).__name__}: {e}",
            ) from None
        if not holds:
            raise StageFailure(
                STAGE,
                "assertion_fails_on_gold",
                f"assertion {assertion.func_name}({assertion.arguments}) does not "
                "hold after the gold actions",
            )
    return env, transcript, {"db_changed": changed, "writes": writes}


def _call_messages(call_id: str, action: Any, result: str) -> list[dict[str, Any]]:
    """One gold action as dialogue messages: the call (by its requestor) and the tool's result."""
    call = {"id": call_id, "name": action.name, "arguments": dict(action.arguments)}
    return [
        {"role": action.requestor, "content": "", "tool_calls": [call]},
        {"role": "tool", "content": result, "tool_call_id": call_id},
    ]


def probe_code_checker(
    domain: Domain, task: Task, gold_env: Environment, gold_transcript: list[dict[str, Any]]
) -> None:
    """A code checker must pass the gold replay and fail where nothing was done.

    Why: a checker that returns True whatever happened (vacuous) rewards every dialogue, and one
    that rejects the gold outcome rewards none; both poison the data silently. So the checker runs
    (sandboxed) on the gold replay — it must pass — then on the unmodified initial state with an
    empty transcript, and on a perturbed outcome (the gold replay without its last write action)
    where that differs from the gold one — it must pass neither (a fail or an error is "not a
    pass"). The perturbation needs nothing domain-specific: every domain has write tools.
    """
    assert task.checker_source is not None
    initial = domain.make_env(task).db_state("assistant")
    gold = run_code_checker(
        task.checker_source, initial, gold_env.db_state("assistant"), gold_transcript
    )
    if gold.status != "pass":
        raise StageFailure(
            STAGE,
            "checker_fails_on_gold",
            f"code checker does not pass the gold replay: {gold.status}"
            + (f" ({gold.reason})"[:300] if gold.reason else ""),
        )
    idle = run_code_checker(task.checker_source, initial, initial, [])
    if idle.status == "pass":
        raise StageFailure(
            STAGE,
            "checker_vacuous",
            "code checker passes on the unmodified initial state with an empty "
            "transcript: it cannot tell the gold outcome from doing nothing",
        )
    partial = _without_last_write(domain, task)
    if partial is None or partial[0] == gold_env.db_state("assistant"):
        return
    dropped, (final, transcript) = partial[2], partial[:2]
    if run_code_checker(task.checker_source, initial, final, transcript).status == "pass":
        raise StageFailure(
            STAGE,
            "checker_vacuous",
            f"code checker passes on a perturbed outcome (the gold replay without "
            f"its last write, {dropped}): it does not check the whole outcome",
        )


def _without_last_write(domain: Domain, task: Task) -> tuple[Any, list[dict[str, Any]], str] | None:
    """(agent DB, transcript, dropped action's name) of the gold replay minus its last write
    action; None when it has no write. Later actions that now fail are kept as error results."""
    env = domain.make_env(task)
    kinds = tool_kinds(env)
    actions = list(task.evaluation_criteria.actions or []) if task.evaluation_criteria else []
    writes = [i for i, a in enumerate(actions) if kinds.get(a.name) == "write"]
    if not writes:
        return None
    transcript: list[dict[str, Any]] = []
    for i, a in enumerate(actions):
        if i == writes[-1]:
            continue
        result = env.call(a.name, a.arguments, a.requestor)
        transcript += _call_messages(f"gold{i}", a, result.content)
    return env.db_state("assistant"), transcript, actions[writes[-1]].name


async def verify_task(
    llm: ChatLLM,
    domain: Domain,
    task: Task,
    prompts: PromptSet,
    *,
    sampling: Sampling,
    cache_tag: str,
    use_judge: bool = True,
) -> dict[str, Any]:
    """Executable checks, then (optionally) the LLM judge. Raises StageFailure; returns facts."""
    if task.checker_source:
        check_checker_source(task.checker_source)
    gold_env, gold_transcript, facts = replay_gold(domain, task)
    if task.checker_source:  # sandbox runs block: keep them off the event loop
        await asyncio.to_thread(probe_code_checker, domain, task, gold_env, gold_transcript)
    if not use_judge:
        return facts
    prompt = prompts.render(
        "task_verify",
        domain=domain.name,
        policy=domain.policy,
        task_json=task.model_dump_json(exclude_none=True, indent=1),
    )
    completion = await chat(
        llm,
        [{"role": "system", "content": prompt}, {"role": "user", "content": "Judge the task."}],
        stage=STAGE,
        sampling=sampling,
        cache_tag=cache_tag,
    )
    verdict = parse_model(first_message(completion, STAGE).content, TaskJudgement, stage=STAGE)
    if not (verdict.policy_consistent and verdict.solvable):
        what = [
            w
            for w, ok in (
                ("not policy-consistent", verdict.policy_consistent),
                ("not solvable", verdict.solvable),
            )
            if not ok
        ]
        raise StageFailure(
            STAGE, "judge_rejected", f"judge: {' and '.join(what)}: {verdict.reason}"[:500]
        )
    return {**facts, "judge_reason": verdict.reason}
