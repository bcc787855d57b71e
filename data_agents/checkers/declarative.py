"""The declarative checker: a task's `evaluation_criteria`, evaluated the way tau2-bench does.

Reward = product over the task's `reward_basis` of binary components:
- DB: replay the gold actions on a fresh environment (`domain.make_env(task)`) and compare the
  canonical hashes of the agent DB and the user DB with the final environment's. As in tau2, gold
  actions that error are skipped, and a task with neither gold actions nor env assertions passes.
- ENV_ASSERTION: every assertion holds on the final environment.
- ACTION: every gold action matches some tool call in the transcript (tau2's
  `Action.compare_with_tool_call`: same name; the compared arguments equal).
- COMMUNICATE: every string appears in some assistant message (case-insensitive, commas removed
  from the message, as tau2 does).
NL_ASSERTION needs an LLM judge and CODE a sandboxed program: neither is decided here.

One difference from tau2, on purpose: tau2 replays the gold actions without `sync_tools` while
trajectories are replayed with it; we replay the gold actions through `Environment.call`, like any
trajectory, so a gold trajectory always matches its own replay. This can change only the DB
component of telecom, whose reward basis never contains DB.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from data_agents.checkers.verdict import Verdict
from data_agents.domains.base import Domain
from data_agents.domains.task import Action, Task
from data_agents.env import Environment

ROLES = ("system", "user", "assistant", "tool")
DECLARATIVE_BASES = ("DB", "ENV_ASSERTION", "ACTION", "COMMUNICATE")


def validate_transcript(transcript: Any) -> list[dict[str, Any]]:
    """Check the dialogue contract; raise ValueError naming the first bad message."""
    if not isinstance(transcript, (list, tuple)):
        raise ValueError(f"transcript must be a list of messages, got {type(transcript).__name__}")
    for i, msg in enumerate(transcript):
        if not isinstance(msg, dict):
            raise ValueError(f"message {i} must be a dict, got {type(msg).__name__}")
        if msg.get("role") not in ROLES:
            raise ValueError(f"message {i}: role {msg.get('role')!r} is not one of {ROLES}")
        content = msg.get("content")
        if content is not None and not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string or None")
        calls = msg.get("tool_calls") or []
        if calls and msg["role"] not in ("assistant", "user"):
            raise ValueError(f"message {i}: only assistant/user messages carry tool_calls")
        for j, call in enumerate(calls):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ValueError(f"message {i}: tool_calls[{j}] needs a string 'name'")
            if not isinstance(call.get("arguments"), dict):
                raise ValueError(f"message {i}: tool_calls[{j}].arguments must be a dict")
    return list(transcript)


def tool_calls(transcript: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """All tool calls made in the dialogue (assistant's and user's), in order."""
    return [
        call
        for msg in transcript
        if msg.get("role") in ("assistant", "user")
        for call in (msg.get("tool_calls") or [])
    ]


def action_matches(action: Action, call: dict[str, Any]) -> bool:
    """tau2's rule: names equal; then the compared arguments — `compare_args`, or when that is
    None the *call's* argument names — must have equal values on both sides."""
    if action.name != call["name"]:
        return False
    names = call["arguments"].keys() if action.compare_args is None else action.compare_args
    if not names:
        return True
    got = {k: v for k, v in call["arguments"].items() if k in names}
    want = {k: v for k, v in action.arguments.items() if k in names}
    return got == want


def communicated(info: str, transcript: Iterable[dict[str, Any]]) -> bool:
    needle = info.lower()
    return any(
        msg.get("role") == "assistant"
        and (msg.get("content") or "").strip()
        and needle in msg["content"].lower().replace(",", "")
        for msg in transcript
    )


def db_matches(domain: Domain, task: Task, final_env: Environment) -> tuple[bool, str | None]:
    criteria = task.evaluation_criteria
    if criteria.actions is None and criteria.env_assertions is None:
        return True, None
    gold = domain.make_env(task)
    for action in criteria.actions or []:
        gold.call(action.name, action.arguments, action.requestor)  # errors skipped, like tau2
    for side in ("assistant", "user"):
        if gold.db_hash(side) != final_env.db_hash(side):
            who = "agent" if side == "assistant" else "user"
            return False, f"{who} DB differs from the gold replay"
    return True, None


def check_declarative(
    domain: Domain, task: Task, final_env: Environment, transcript: Sequence[dict[str, Any]]
) -> Verdict:
    """Evaluate the declarative criteria in `task.evaluation_criteria.reward_basis`.

    `final_env` is the environment the dialogue ran in; `transcript` its messages. A basis this
    checker cannot decide (NL_ASSERTION, CODE) is left out of `components`; NL_ASSERTION alone
    makes the verdict an error, since no LLM judge runs here.
    """
    transcript = validate_transcript(transcript)
    criteria = task.evaluation_criteria
    if criteria is None:
        return Verdict("pass", {}, "task has no evaluation criteria")
    basis = list(dict.fromkeys(criteria.reward_basis))
    if "NL_ASSERTION" in basis:
        return Verdict("error", {}, "NL_ASSERTION is in the reward basis; it needs an LLM judge")
    components: dict[str, float] = {}
    reasons: list[str] = []
    try:
        if "DB" in basis:
            ok, why = db_matches(domain, task, final_env)
            components["DB"] = float(ok)
            reasons += [why] if why else []
        if "ENV_ASSERTION" in basis:
            failed = [a for a in criteria.env_assertions or [] if not final_env.run_assertion(a)]
            components["ENV_ASSERTION"] = float(not failed)
            reasons += [
                f"env assertion failed: {a.func_name}({a.arguments}) != {a.assert_value}"
                for a in failed
            ]
        if "ACTION" in basis:
            calls = tool_calls(transcript)
            missing = [
                a for a in criteria.actions or [] if not any(action_matches(a, c) for c in calls)
            ]
            components["ACTION"] = float(not missing)
            reasons += [f"gold action not taken: {a.name}({a.arguments})" for a in missing]
        if "COMMUNICATE" in basis:
            untold = [s for s in criteria.communicate_info or [] if not communicated(s, transcript)]
            components["COMMUNICATE"] = float(not untold)
            reasons += [f"not communicated: {s!r}" for s in untold]
    except Exception as e:  # a broken task (e.g. an assertion that is not a bool) is no verdict
        return Verdict("error", components, f"declarative check crashed: {type(e).__name__}: {e}")
    status = "pass" if all(v == 1.0 for v in components.values()) else "fail"
    return Verdict(status, components, "; ".join(reasons) or None)
