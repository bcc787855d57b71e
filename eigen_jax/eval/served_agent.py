"""Evaluating an agent behind any OpenAI-compatible endpoint (SGLang, our own `launch/serve.py`,
or a frontier model's API), so served and in-process agents are scored the same way.

Each episode: the user simulator opens, the agent answers through `/v1/chat/completions` with the
domain's tools (full policy and tool schemas: a served model has its own chat template), tool calls
run in the environment, the user replies, until a stop token or the step limit. Rewards come from
the domain's checker, exactly as for in-process rollouts.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Sequence

from eigen_jax.chat import views
from eigen_jax.eval.results import TrialLog
from eigen_jax.rl.user_sim import UserSimulator, UserTurn


def _record_calls(message) -> list[dict[str, Any]]:
    calls = []
    for c in message.tool_calls or []:
        try:
            args = json.loads(c.function.arguments or "{}")
        except json.JSONDecodeError:
            args = {"__unparsable__": c.function.arguments}
        calls.append({"id": c.id, "name": c.function.name,
                      "arguments": args if isinstance(args, dict) else {"value": args}})
    return calls


async def play_episode(client, domain, task, user: UserSimulator, *, max_steps: int = 200,
                       temperature: float = 0.0, max_tokens: int = 1024, key: str = "",
                       ) -> tuple[list[dict[str, Any]], Any, str]:
    """(messages, final env, finish reason) of one served-agent episode."""
    env = domain.make_env(task)
    tools = env.tools_schema("assistant")
    system = {"role": "system", "content": domain.policy}
    messages: list[dict[str, Any]] = []

    async def user_says() -> bool:
        (text,) = await asyncio.to_thread(user.respond, [UserTurn(task, list(messages), key)])
        messages.append({"role": "user", "content": text})
        return views.is_stop(text) is None

    if not await user_says():
        return messages, env, "user_stop"
    while len(messages) < max_steps:
        out = await client.chat([system] + _to_openai(messages), tools=tools,
                                temperature=temperature, max_tokens=max_tokens, use_cache=False)
        msg = out.choices[0].message
        calls = _record_calls(msg)
        messages.append({"role": "assistant", "content": msg.content or "",
                         **({"tool_calls": calls} if calls else {})})
        if calls:
            for c in calls:
                result = env.call(c["name"], c["arguments"], "assistant")
                messages.append({"role": "tool", "content": result.content,
                                 "tool_call_id": c["id"]})
            continue
        if not await user_says():
            return messages, env, "user_stop"
    return messages, env, "max_steps"


def _to_openai(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        o = {"role": m["role"], "content": m.get("content", "")}
        if m.get("tool_calls"):
            o["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                "name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in m["tool_calls"]]
        if m.get("tool_call_id"):
            o["tool_call_id"] = m["tool_call_id"]
        out.append(o)
    return out


async def evaluate_served(urls, domain, tasks, user: UserSimulator, num_trials: int,
                          log: TrialLog, checker, *, concurrency: int = 8, model: str | None = None,
                          **episode_kwargs) -> None:
    """Play every (task, trial) not in `log` against the served agent; log each as it finishes."""
    from data_agents.llm import LLMClient

    sem = asyncio.Semaphore(concurrency)
    async with LLMClient(urls, model=model, max_concurrency=concurrency) as client:
        async def one(task, trial: int):
            async with sem:
                messages, env, finish = await play_episode(
                    client, domain, task, user, key=f"{task.id}/{trial}", **episode_kwargs)
            verdict = checker(domain, task, env, messages) if finish == "user_stop" else None
            log.add([{"task_id": task.id, "trial": trial,
                      "reward": verdict.reward if verdict else 0.0, "finish_reason": finish,
                      "turns": sum(m["role"] == "assistant" for m in messages),
                      "reason": verdict.reason if verdict else finish}])

        await asyncio.gather(*(one(t, k) for t in tasks for k in range(num_trials)
                               if not log.done(t.id, k)))
