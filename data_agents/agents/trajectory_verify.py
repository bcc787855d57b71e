"""Trajectory verifier: the executable checker decides, an LLM judge audits and attributes.

A dialogue is accepted only if the checker passes AND the judge passes it (a checker cannot see a
rude agent, a skipped confirmation that happened to end in the right DB, or a simulator leaking
its instructions). Every rejection is attributed: to the TASK (a broken task makes even a good
dialogue fail; the reflection then fixes synthesis) or to the TRAJECTORY (the agent or the user
simulator misbehaved; the reflection fixes the rollout prompts). A dialogue that hit the step
limit scores 0, as in the paper, without paying for a judge.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import pydantic

from data_agents import checkers
from data_agents.agents.base import ChatLLM, Sampling, chat, dumps
from data_agents.agents.parsing import StageFailure, first_message, parse_model
from data_agents.agents.rollout import Rollout
from data_agents.checkers.verdict import Verdict
from data_agents.domains.base import Domain
from data_agents.domains.task import Task
from data_agents.prompts import PromptSet

STAGE = "trajectory_verify"
MAX_TRANSCRIPT_CHARS = 12000


class TrajectoryJudgement(pydantic.BaseModel):
    passed: pydantic.StrictBool  # "yes"/1 are not verdicts
    attribution: Literal["task", "trajectory"] = "trajectory"
    reason: str = ""


@dataclasses.dataclass
class TrajectoryResult:
    verdict: Verdict
    judge: dict[str, Any] | None


def run_checker(domain: Domain, task: Task, rollout: Rollout) -> Verdict:
    """`data_agents.checkers.check` (declarative criteria + sandboxed code checker); a crashing
    checker is an error verdict, never a pass."""
    try:
        return checkers.check(domain, task, rollout.env, rollout.messages)
    except Exception as e:  # noqa: BLE001 - the instance fails, the run goes on
        return Verdict("error", {}, f"checker crashed: {type(e).__name__}: {e}")


def render_transcript(messages: list[dict[str, Any]]) -> str:
    lines = []
    for m in messages[1:]:  # the system prompt is the policy, shown separately
        if m.get("tool_calls"):
            for c in m["tool_calls"]:
                lines.append(f"{m['role']} calls {c['name']}({dumps(c['arguments'])})")
        if m["content"]:
            lines.append(f"{m['role']}: {m['content']}")
    text = "\n".join(lines)
    if len(text) > MAX_TRANSCRIPT_CHARS:  # keep the end: that is where outcomes are
        text = "[...]\n" + text[-MAX_TRANSCRIPT_CHARS:]
    return text


async def verify_trajectory(
    llm: ChatLLM,
    domain: Domain,
    task: Task,
    rollout: Rollout,
    prompts: PromptSet,
    *,
    sampling: Sampling,
    cache_tag: str,
    use_judge: bool = True,
) -> TrajectoryResult:
    """Return the verdict (and judge opinion) of an accepted dialogue; raise StageFailure else."""
    if rollout.termination == "max_steps":
        raise StageFailure(
            STAGE,
            "max_steps",
            f"dialogue hit the step limit ({rollout.steps} steps) without the user ending it",
            "trajectory",
        )
    verdict = run_checker(domain, task, rollout)
    judge: TrajectoryJudgement | None = None
    judge_error: StageFailure | None = None
    if use_judge:
        prompt = prompts.render(
            "trajectory_verify",
            domain=domain.name,
            policy=domain.policy,
            task_json=task.model_dump_json(exclude_none=True, indent=1),
            transcript=render_transcript(rollout.messages),
            checker_result=f"{verdict.status} ({verdict.reason or 'all criteria met'})",
        )
        try:
            completion = await chat(
                llm,
                [
                    {"role": "system", "content": prompt},
                    {"role": "user", "content": "Audit the dialogue."},
                ],
                stage=STAGE,
                sampling=sampling,
                cache_tag=cache_tag,
                attribution="trajectory",
            )
            judge = parse_model(
                first_message(completion, STAGE, "trajectory").content,
                TrajectoryJudgement,
                stage=STAGE,
                attribution="trajectory",
            )
        except StageFailure as f:
            judge_error = f
    if verdict.status != "pass":
        category = "checker_error" if verdict.status == "error" else "checker_failed"
        attribution = (
            judge.attribution
            if judge is not None
            else ("task" if verdict.status == "error" else "trajectory")
        )
        reason = f"checker {verdict.status}: {verdict.reason or 'no reason'}"
        if judge is not None:
            reason += f" | judge ({judge.attribution}): {judge.reason}"
        raise StageFailure(STAGE, category, reason[:600], attribution)
    if judge_error is not None:
        raise judge_error
    if judge is not None and not judge.passed:
        raise StageFailure(
            STAGE, "judge_rejected", f"judge: {judge.reason}"[:600], judge.attribution
        )
    return TrajectoryResult(verdict, None if judge is None else judge.model_dump())
