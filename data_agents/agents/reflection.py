"""Reflection: reads a round's aggregated, attributed failures and writes the next prompt version.

The new version's guidance for each agent has two parts: the reflection model's rewritten advice
(kept from the parent version when the model's answer is unusable, and that failure recorded),
and a data-driven digest of the failures routed to the agent that can fix them — task-attributed
failures to the task synthesiser, trajectory-attributed ones to the assistant and the simulator.
So every round stores a new version even when the model is weak, and the digest never drifts
from the journal. Rollback (choosing the parent) is the engine's decision, not this module's.
"""

from __future__ import annotations

import collections
from typing import Any

import pydantic

from data_agents.agents.base import ChatLLM, Sampling, chat, dumps
from data_agents.agents.parsing import StageFailure, first_message, parse_model
from data_agents.prompts import AGENTS, PromptSet, PromptStore

STAGE = "reflection"
DIGEST_HEADER = "Frequent failures last round (avoid them):"
TOP_K = 5


class ReflectionOutput(pydantic.BaseModel):
    analysis: str = ""
    guidance: dict[str, str] = pydantic.Field(min_length=1)

    @pydantic.field_validator("guidance")
    @classmethod
    def _known_agents(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(AGENTS))
        if unknown:
            raise ValueError(f"unknown agents {unknown}; known: {list(AGENTS)}")
        return v


def responsible_agents(failure: dict[str, Any]) -> tuple[str, ...]:
    """Which agents' prompts can prevent this failure next round."""
    stage, who = failure.get("stage"), failure.get("attribution")
    if stage in ("plan",):
        return ("planner",)
    if stage in ("task_synth", "task_verify") or who == "task":
        return ("task_synth", "planner")
    if failure.get("category") == "user_empty":
        return ("user_sim",)
    return ("assistant", "user_sim")


def failure_digests(failures: list[dict[str, Any]]) -> dict[str, str]:
    """Per agent: its TOP_K failure categories with counts and one example reason each."""
    by_agent: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    example: dict[tuple[str, str], str] = {}
    for f in failures:
        label = f"{f.get('stage')}/{f.get('category')} ({f.get('attribution')})"
        for agent in responsible_agents(f):
            by_agent[agent][label] += 1
            example.setdefault((agent, label), str(f.get("reason", ""))[:160])
    out = {}
    for agent, counts in by_agent.items():
        lines = [
            f"- {label}: {n}x, e.g. {example[(agent, label)]}"
            for label, n in counts.most_common(TOP_K)
        ]
        out[agent] = DIGEST_HEADER + "\n" + "\n".join(lines)
    return out


def _strip_digest(text: str) -> str:
    return text.split(DIGEST_HEADER)[0].strip()


def failure_table(failures: list[dict[str, Any]]) -> str:
    counts = collections.Counter(
        (f.get("stage"), f.get("category"), f.get("attribution")) for f in failures
    )
    return "\n".join(f"- {s}/{c} [{a}]: {n}" for (s, c, a), n in counts.most_common()) or "(none)"


async def reflect(
    llm: ChatLLM,
    store: PromptStore,
    parent: PromptSet,
    *,
    domain_name: str,
    round_index: int,
    accepted: int,
    total: int,
    failures: list[dict[str, Any]],
    sampling: Sampling,
    cache_tag: str,
) -> tuple[PromptSet, dict[str, Any]]:
    """Commit the next prompt version derived from `parent`; return it and a reflection log."""
    current = {a: _strip_digest(parent.guidance.get(a, "")) for a in AGENTS}
    examples = (
        "\n".join(
            f"- [{f.get('stage')}/{f.get('category')}] {str(f.get('reason'))[:200]}"
            for f in failures[:12]
        )
        or "(none)"
    )
    prompt = parent.render(
        "reflection",
        domain=domain_name,
        accepted=accepted,
        total=total,
        failure_table=failure_table(failures),
        examples=examples,
        current_guidance=dumps(current),
    )
    log: dict[str, Any] = {"parent": parent.name, "round": round_index}
    advice = dict(current)
    try:
        completion = await chat(
            llm,
            [
                {"role": "system", "content": prompt},
                {"role": "user", "content": "Write the new guidance."},
            ],
            stage=STAGE,
            sampling=sampling,
            cache_tag=cache_tag,
        )
        out = parse_model(first_message(completion, STAGE).content, ReflectionOutput, stage=STAGE)
        advice.update({k: v.strip() for k, v in out.guidance.items()})
        log["analysis"] = out.analysis
    except StageFailure as f:
        log["failure"] = f.to_json()
    digests = failure_digests(failures)
    guidance = {
        a: "\n\n".join(p for p in (advice.get(a, ""), digests.get(a, "")) if p)
        for a in AGENTS
        if a != "reflection"
    }
    guidance = {a: g for a, g in guidance.items() if g}
    reason = f"reflection on round {round_index}: {accepted}/{total} accepted" + (
        " (model output unusable; digest only)" if "failure" in log else ""
    )
    version = store.commit(parent.name, guidance, round_index=round_index, reason=reason)
    log["version"] = version.name
    return version, log
