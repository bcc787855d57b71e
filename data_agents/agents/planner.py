"""Meta-planner: N diverse (synthesis plan, evaluation plan) pairs per round, one per stream.

Why plans: the paper found diversity of plans is what makes the data good (64 plan pairs far
better than 4). A plan fixes the complexity tier, tool-use patterns and user style; its evaluation
plan fixes the rubric and failure taxonomy the verifiers use. When the model's answer is unusable
(bad JSON, wrong shape, too few plans) the round still runs: the gap is filled from the shipped
seed plans and the planner's failure is recorded with the plans.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from data_agents.agents.base import ChatLLM, Sampling, chat, tool_list
from data_agents.agents.parsing import StageFailure, first_message, parse_model
from data_agents.domains.base import Domain
from data_agents.prompts import PromptSet, seed_plans

STAGE = "plan"


class SynthesisPlan(pydantic.BaseModel):
    complexity_tier: Literal["easy", "medium", "hard", "expert"]
    tool_patterns: list[str] = pydantic.Field(min_length=1)
    user_style: str = pydantic.Field(min_length=1)
    focus: str = pydantic.Field(min_length=1)


class EvaluationPlan(pydantic.BaseModel):
    rubric: list[str] = pydantic.Field(min_length=1)
    failure_taxonomy: list[str] = pydantic.Field(min_length=1)


class PlanPair(pydantic.BaseModel):
    synthesis: SynthesisPlan
    evaluation: EvaluationPlan


class PlannerOutput(pydantic.BaseModel):
    plans: list[PlanPair] = pydantic.Field(min_length=1)


async def make_plans(
    llm: ChatLLM,
    domain: Domain,
    prompts: PromptSet,
    num_plans: int,
    *,
    sampling: Sampling,
    cache_tag: str,
    attempts: int = 2,
) -> dict[str, Any]:
    """Return {"plans": [num_plans plan dicts], "sources": ["llm"|"seed"...], "failures": [...]}.

    Up to `attempts` requests (each with its own cache tag); valid plans are kept in order and
    the remainder is filled cyclically from the seed plans.
    """
    if num_plans < 1:
        raise ValueError(f"num_plans must be >= 1, got {num_plans}")
    schemas = domain.make_env().tools_schema("assistant")
    prompt = prompts.render(
        "planner",
        domain=domain.name,
        policy=domain.policy,
        tool_list=tool_list(schemas),
        num_plans=num_plans,
    )
    plans: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for attempt in range(attempts):
        if len(plans) >= num_plans:
            break
        try:
            completion = await chat(
                llm,
                [
                    {"role": "system", "content": prompt},
                    {"role": "user", "content": "Write the plans now."},
                ],
                stage=STAGE,
                sampling=sampling,
                cache_tag=f"{cache_tag}/attempt{attempt}",
            )
            parsed = parse_model(
                first_message(completion, STAGE).content, PlannerOutput, stage=STAGE
            )
            plans += [p.model_dump() for p in parsed.plans]
        except StageFailure as f:
            failures.append(f.to_json())
    plans = plans[:num_plans]
    sources = ["llm"] * len(plans)
    seeds = seed_plans()
    while len(plans) < num_plans:
        plans.append(seeds[(len(plans)) % len(seeds)])
        sources.append("seed")
    return {"plans": plans, "sources": sources, "failures": failures}
