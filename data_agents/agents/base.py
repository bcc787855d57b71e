"""What every agent shares: its LLM call wrapped so that protocol errors become recorded failures.

Why the split: a 4xx (prompt too long for the context) or a malformed response concerns one
instance and is journaled as its failure; a server that stays unreachable after the client's
retries (`LLMUnavailableError`) concerns the whole run, so it propagates and the run stops,
to be resumed later without losing anything journaled.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, Protocol

from data_agents import dialogue as protocol
from data_agents.agents.parsing import Attribution, StageFailure
from data_agents.llm.errors import LLMHTTPError, LLMResponseError


class ChatLLM(Protocol):
    """The part of `data_agents.llm.LLMClient` the agents use (fakes implement just this)."""

    async def chat(
        self,
        messages: Sequence[dict],
        *,
        tools: Sequence[dict] | None = None,
        cache_tag: str | None = None,
        **params: Any,
    ) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Per-agent sampling settings sent with every chat request."""

    temperature: float = 0.7
    max_tokens: int = 1024

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    def params(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}


async def chat(
    llm: ChatLLM,
    messages: list[dict],
    *,
    stage: str,
    sampling: Sampling,
    cache_tag: str,
    tools: list[dict] | None = None,
    attribution: Attribution = "task",
) -> Any:
    """One chat request; per-instance protocol errors become a StageFailure(`llm_error`)."""
    try:
        return await llm.chat(
            to_wire(messages), tools=tools or None, cache_tag=cache_tag, **sampling.params()
        )
    except (LLMHTTPError, LLMResponseError) as e:
        raise StageFailure(stage, "llm_error", str(e)[:500], attribution) from None


to_wire = protocol.to_wire  # the one wire format (data_agents.dialogue)


def tool_list(schemas: list[dict[str, Any]]) -> str:
    """`- name(arg, ...): description` per tool, for prompts that describe tools in prose."""
    lines = []
    for s in schemas:
        fn = s.get("function", s)
        args = ", ".join((fn.get("parameters") or {}).get("properties", {}))
        lines.append(f"- {fn.get('name')}({args}): {fn.get('description', '')}")
    return "\n".join(lines)


def dumps(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False, sort_keys=True, default=str)


def tool_kinds(env: Any) -> dict[str, str]:
    """Tool name → kind ("read", "write", "generic") where the environment says; else {}."""
    tools = getattr(env, "tools", None)
    if not callable(tools):
        return {}
    try:
        return {name: getattr(t, "kind", "generic") for name, t in tools("assistant").items()}
    except Exception:  # noqa: BLE001 - an environment without kinds: callers fall back
        return {}
