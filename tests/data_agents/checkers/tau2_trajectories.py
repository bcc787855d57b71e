"""Scripted trajectories for tau2 tasks (gold, one write dropped, one argument wrong, nothing
communicated) and tau2's own evaluator on them: the reference our declarative checker must match."""

from __future__ import annotations

import copy
from typing import Any

from tau2.data_model.simulation import SimulationRun, TerminationReason
from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

from data_agents.domains.task import Action, Task
from data_agents.domains.tau2_adapter import Tau2Domain, to_tau2_messages, to_tau2_task


def play(domain: Tau2Domain, task: Task, actions: list[Action], final_text: str):
    """Run `actions` as tool calls of their requestors in a fresh env; return (env, transcript)."""
    env = domain.make_env(task)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Hi, I need help."}]
    for k, action in enumerate(actions):
        result = env.call(action.name, action.arguments, action.requestor)
        call_id = f"call_{k}"
        messages.append(
            {
                "role": action.requestor,
                "content": None,
                "tool_calls": [{"id": call_id, "name": action.name, "arguments": action.arguments}],
            }
        )
        messages.append(
            {
                "role": "tool",
                "tool_call_id": call_id,
                "content": result.content,
                "error": result.error,
            }
        )
    messages.append({"role": "assistant", "content": final_text})
    return env, messages


def _wrong(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "_wrong"
    if isinstance(value, list):
        return value[:-1] if value else ["wrong"]
    if isinstance(value, dict):
        return {}
    return "wrong"


def variants(domain: Tau2Domain, task: Task) -> dict[str, tuple[list[Action], str]]:
    """name -> (actions, final assistant text) for the gold run and its perturbations."""
    criteria = task.evaluation_criteria
    gold = list(criteria.actions or [])
    told = "Done. " + " ".join(criteria.communicate_info or [])
    out = {"gold": (gold, told)}
    probe = domain.make_env()
    writes = [i for i, a in enumerate(gold) if probe.tool_type(a.name, a.requestor) == "write"]
    if writes:
        i = writes[-1]
        out["drop_write"] = (gold[:i] + gold[i + 1 :], told)
        j = writes[0]
        if gold[j].arguments:
            bad = copy.deepcopy(gold[j])
            key = sorted(bad.arguments)[-1]
            bad.arguments[key] = _wrong(bad.arguments[key])
            out["wrong_arg"] = (gold[:j] + [bad] + gold[j + 1 :], told)
    if criteria.communicate_info:
        out["silent"] = (gold, "Done.")
    return out


def tau2_reward(domain: Tau2Domain, task: Task, messages: list[dict[str, Any]]):
    """tau2's `evaluate_simulation` (EvaluationType.ALL) on our transcript."""
    sim = SimulationRun(
        id="sim",
        task_id=task.id,
        start_time="",
        end_time="",
        duration=0.0,
        termination_reason=TerminationReason.AGENT_STOP,
        messages=to_tau2_messages(messages),
    )
    return evaluate_simulation(
        sim, to_tau2_task(task), EvaluationType.ALL, solo_mode=False, domain=domain.name
    )
