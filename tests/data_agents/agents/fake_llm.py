"""A scripted chat LLM for engine tests: routes on the `ROLE:` line of the system prompt.

The default scripts form a world in which every stage succeeds on the outfitter domain: the
synthesiser looks up customer C100 and asks for a card change; the user simulator passes the gold
call (written into its instructions) to the assistant, which performs it. Tests override one
role with a function to inject malformed or adversarial output. Run as a module it drives the
engine (used by the SIGKILL-resume test): `python -m tests.data_agents.agents.fake_llm OUT`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from openai.types.chat import ChatCompletion

from data_agents.llm.types import TokenUsage

GOLD = re.compile(r"GOLD=(\{.*?\})END")


def completion(
    content: str | None = None,
    tool_calls: list[tuple[str, Any]] | None = None,
) -> ChatCompletion:
    """A chat completion with text and/or tool calls ((name, arguments-as-object-or-raw-str))."""
    calls = None
    if tool_calls:
        calls = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)},
            }
            for i, (n, a) in enumerate(tool_calls)
        ]
    return ChatCompletion.model_validate(
        {
            "id": "fake",
            "object": "chat.completion",
            "created": 0,
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls" if calls else "stop",
                    "message": {"role": "assistant", "content": content, "tool_calls": calls},
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


def role_of(messages: list[dict]) -> str:
    m = re.search(r"ROLE: ([\w -]+)", messages[0]["content"])
    return {
        "meta-planner": "planner",
        "task synthesiser": "task_synth",
        "task verifier": "task_verify",
        "user simulator": "user_sim",
        "customer-service agent": "assistant",
        "trajectory verifier": "trajectory_verify",
        "reflection agent": "reflection",
    }[m.group(1).strip()]


PLAN = {
    "synthesis": {
        "complexity_tier": "easy",
        "tool_patterns": ["get_customer -> write"],
        "user_style": "terse",
        "focus": "card change",
    },
    "evaluation": {"rubric": ["changes the card"], "failure_taxonomy": ["wrong card"]},
}


def default_planner(messages, tools, tag):
    n = int(re.search(r"Write (\d+) DIVERSE", messages[0]["content"]).group(1))
    return completion("Here you go:\n```json\n" + json.dumps({"plans": [PLAN] * n}) + "\n```")


def default_task_synth(messages, tools, tag):
    if messages[-1]["role"] == "user":  # first step: explore
        return completion(None, [("get_customer", {"customer_id": "C100"})])
    seen = json.loads(messages[-1]["content"])["card_last4"]
    last4 = str(1000 + int(hashlib.sha256(tag.encode()).hexdigest(), 16) % 9000)
    last4 = last4 if last4 != seen else str(int(last4) % 9000 + 1000 + 1)
    gold = {
        "name": "update_payment_card",
        "arguments": {"customer_id": "C100", "card_last4": last4},
    }
    return completion(
        json.dumps(
            {
                "persona": "terse",
                "reason_for_call": "new card",
                "known_info": "customer C100",
                "task_instructions": f"Ask for the change. GOLD={json.dumps(gold)}END",
                "actions": [gold],
                "communicate_info": [],
            }
        )
    )


def default_user(messages, tools, tag):
    if any(m["role"] == "user" and "Done" in m["content"] for m in messages[2:]):
        return completion("Thanks, bye. ###STOP###")
    gold = GOLD.search(messages[0]["content"]).group(0)
    return completion(f"Please change my card. {gold}")


def default_assistant(messages, tools, tag):
    if messages[-1]["role"] == "tool":
        return completion("Done: your card is updated.")
    found = GOLD.search(messages[-1]["content"])
    if found is None:
        return completion("How can I help?")
    gold = json.loads(found.group(1))
    return completion(None, [(gold["name"], gold["arguments"])])


SCRIPTS: dict[str, Callable] = {
    "planner": default_planner,
    "task_synth": default_task_synth,
    "task_verify": lambda m, t, g: completion(
        '{"policy_consistent": true, "solvable": true, "reason": "fine"}'
    ),
    "user_sim": default_user,
    "assistant": default_assistant,
    "trajectory_verify": lambda m, t, g: completion(
        '{"passed": true, "attribution": "trajectory", "reason": "ok"}'
    ),
    "reflection": lambda m, t, g: completion(
        json.dumps({"analysis": "fine", "guidance": {"task_synth": "Prefer varied customers."}})
    ),
}


class FakeLLM:
    """Implements `chat` like `LLMClient`; records every call as (role, messages, tools, tag)."""

    def __init__(self, overrides: dict[str, Callable] | None = None, delay_s: float = 0.0):
        self.scripts = {**SCRIPTS, **(overrides or {})}
        self.calls: list[tuple[str, list[dict], Any, str]] = []
        self.usage = TokenUsage()
        self.delay_s = delay_s

    async def chat(self, messages, *, tools=None, cache_tag=None, **params):
        assert params["max_tokens"] >= 1 and "temperature" in params
        for m in messages:  # the wire format the real client sends
            for c in m.get("tool_calls") or []:
                assert c["type"] == "function" and isinstance(c["function"]["arguments"], str)
        role = role_of(messages)
        self.calls.append((role, messages, tools, cache_tag))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        out = self.scripts[role](messages, tools, cache_tag)
        self.usage.add(10, 5)
        return out


def main(out_dir: str, delay_s: float = 0.01) -> None:  # pragma: no cover - resume test's child
    from data_agents.domains import load
    from data_agents.synthesis import SynthesisConfig, SynthesisEngine

    cfg = SynthesisConfig(num_rounds=2, plans_per_round=4, tasks_per_plan=3, max_concurrency=2)
    engine = SynthesisEngine(
        FakeLLM(delay_s=delay_s), load("outfitter", n_train=0, n_test=0), out_dir, cfg
    )
    print(json.dumps(asyncio.run(engine.run())["worker_counts"]))


if __name__ == "__main__":
    main(sys.argv[1], *map(float, sys.argv[2:3]))
