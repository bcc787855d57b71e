"""Task synthesiser: explores the database through READ tools, then emits a tau2-format task.

Why explore first: tasks must reference records that exist (real customer ids, real rentals), so
the synthesiser looks them up with the same tools the agent will have, on a private copy of the
environment (nothing it does persists). Only read tools are offered where the environment says
which tools read; the final answer is parsed defensively into `data_agents.domains.task.Task`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import pydantic

from data_agents.agents.base import (
    ChatLLM,
    Sampling,
    chat,
    dumps,
    tool_kinds,
    tool_list,
)
from data_agents.agents.parsing import (
    StageFailure,
    first_message,
    parse_model,
    parse_tool_calls,
)
from data_agents.domains.base import Domain
from data_agents.domains.task import (
    Action,
    EnvAssertion,
    EvaluationCriteria,
    StructuredUserInstructions,
    Task,
    UserScenario,
)
from data_agents.prompts import PromptSet

STAGE = "task_synth"


class GoldAction(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)
    arguments: dict[str, Any] = {}
    requestor: Literal["assistant", "user"] = "assistant"


class SynthAssertion(pydantic.BaseModel):
    func_name: str = pydantic.Field(min_length=1)
    arguments: dict[str, Any] = {}
    assert_value: bool = True
    env_type: Literal["assistant", "user"] = "assistant"


class SynthesizedTask(pydantic.BaseModel):
    """The JSON the synthesiser must answer with (see prompts/v0/task_synth.md)."""

    model_config = pydantic.ConfigDict(extra="ignore")
    persona: str | None = None
    reason_for_call: str = pydantic.Field(min_length=1)
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str = pydantic.Field(min_length=1)
    actions: list[GoldAction] = []
    communicate_info: list[str] = []
    env_assertions: list[SynthAssertion] = []
    checker_source: str | None = None

    def to_task(self, task_id: str, domain: str, plan: dict[str, Any]) -> Task:
        basis = ["DB", "COMMUNICATE"] + (["ENV_ASSERTION"] if self.env_assertions else [])
        return Task(
            id=task_id,
            description={"purpose": "synthesised", "plan": plan},
            user_scenario=UserScenario(
                persona=self.persona,
                instructions=StructuredUserInstructions(
                    domain=domain,
                    reason_for_call=self.reason_for_call,
                    known_info=self.known_info,
                    unknown_info=self.unknown_info,
                    task_instructions=self.task_instructions,
                ),
            ),
            evaluation_criteria=EvaluationCriteria(
                actions=[
                    Action(
                        action_id=f"{task_id}_{i}",
                        requestor=a.requestor,
                        name=a.name,
                        arguments=a.arguments,
                    )
                    for i, a in enumerate(self.actions)
                ],
                env_assertions=[EnvAssertion(**a.model_dump()) for a in self.env_assertions]
                or None,
                communicate_info=list(self.communicate_info),
                reward_basis=basis,
            ),
            checker_source=self.checker_source or None,
        )


@dataclasses.dataclass
class SynthResult:
    task: Task
    exploration: list[dict[str, Any]]  # the synthesiser's own transcript (for provenance)
    tool_calls: int


def read_tool_schemas(domain: Domain) -> list[dict[str, Any]]:
    """The agent tools that only read, when the environment labels kinds; else all of them."""
    env = domain.make_env()
    schemas = env.tools_schema("assistant")
    kinds = tool_kinds(env)
    if not kinds:
        return schemas
    return [s for s in schemas if kinds.get(s["function"]["name"]) == "read"]


async def synthesize_task(
    llm: ChatLLM,
    domain: Domain,
    plan: dict[str, Any],
    prompts: PromptSet,
    *,
    task_id: str,
    sampling: Sampling,
    max_steps: int,
    cache_tag: str,
) -> SynthResult:
    """Run the explore-then-write loop; raises StageFailure (attributed to the task)."""
    env = domain.make_env()
    all_schemas = env.tools_schema("assistant")
    read_schemas = read_tool_schemas(domain)
    read_names = {s["function"]["name"] for s in read_schemas}
    system = prompts.render(
        "task_synth",
        domain=domain.name,
        policy=domain.policy,
        synthesis_plan=dumps(plan.get("synthesis", {})),
        evaluation_plan=dumps(plan.get("evaluation", {})),
        tool_list=tool_list(all_schemas),
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Explore the database with the tools, then write the task."},
    ]
    n_calls = 0
    for step in range(max_steps):
        completion = await chat(
            llm,
            messages,
            stage=STAGE,
            sampling=sampling,
            cache_tag=f"{cache_tag}/step{step}",
            tools=read_schemas,
        )
        message = first_message(completion, STAGE)
        calls = parse_tool_calls(message, prefix=f"synth{step}")
        if not calls:
            parsed = parse_model(message.content, SynthesizedTask, stage=STAGE)
            try:
                task = parsed.to_task(task_id, domain.name, plan)
            except pydantic.ValidationError as e:  # e.g. an assertion the Task model rejects
                raise StageFailure(STAGE, "schema", str(e)[:400], "task", message.content) from None
            messages.append({"role": "assistant", "content": message.content or ""})
            return SynthResult(task, messages, n_calls)
        messages.append(
            {
                "role": "assistant",
                "content": message.content or "",
                "tool_calls": [c.record() for c in calls],
            }
        )
        for c in calls:
            n_calls += 1
            if c.error:
                content = c.error
            elif c.name not in read_names:
                content = f"Error: {c.name!r} is not a read tool; exploration may only read"
            else:
                content = env.call(c.name, c.arguments, "assistant").content
            messages.append({"role": "tool", "content": content, "tool_call_id": c.id})
    raise StageFailure(
        STAGE,
        "exploration_budget",
        f"no task after {max_steps} exploration steps ({n_calls} tool calls)",
    )
