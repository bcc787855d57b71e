"""Evaluating an agent behind any OpenAI-compatible endpoint (SGLang, our own `launch/serve.py`,
or a frontier model's API), so served and in-process agents are scored the same way.

Each episode is `data_agents.dialogue.play` (the one dialogue protocol): the user simulator opens,
the agent answers through `/v1/chat/completions` with the domain's tools (full policy and tool
schemas: a served model has its own chat template), each side's tool calls run in the environment
as that side (tau2 telecom's user acts on their own device), until a stop signal or a limit
(`RolloutConfig.max_steps` / `max_errors`, the same gin knobs as RL). Rewards come from the
domain's checker, exactly as for in-process rollouts.

A request the agent or user server refuses (HTTP 4xx: typically a prompt longer than its context)
ends that trial as a failed one (`max_context` / `agent_error` / `user_error`, reward 0); only an
unreachable server stops the evaluation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from data_agents import dialogue as protocol
from eigen_jax.eval.results import TrialLog
from eigen_jax.rl.user_sim import ContextOverflow, UserSimulator, UserTurn, as_turn

_CONTEXT_WORDS = ("context", "max_len", "too long", "maximum", "length")


def refusal_finish(status: int, body: str) -> str:
    """The finish of a trial whose agent request got HTTP `status`: a context overflow (our
    server, SGLang, vLLM and OpenAI all name the length) or another agent error."""
    text = body.lower()
    return (
        "max_context" if status == 400 and any(w in text for w in _CONTEXT_WORDS) else "agent_error"
    )


async def play_episode(
    client,
    domain,
    task,
    user: UserSimulator,
    *,
    limits: protocol.Limits | None = None,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    key: str = "",
) -> protocol.Dialogue:
    """One served-agent episode: the finished `Dialogue` (messages, env, finish)."""
    from data_agents.llm import LLMHTTPError

    env = domain.make_env(task)
    tools, user_tools = env.tools_schema("assistant"), tuple(env.tools_schema("user"))
    guidelines = protocol.user_guidelines(domain.name, bool(user_tools))
    state = protocol.Dialogue(env, limits)
    steps = 0

    async def agent(view: list[dict[str, Any]]) -> protocol.Turn:
        nonlocal steps
        steps += 1
        try:
            out = await client.chat(
                protocol.to_wire(view),
                tools=tools,
                temperature=temperature,
                max_tokens=max_tokens,
                use_cache=False,
            )
        except LLMHTTPError as e:
            if e.status_code >= 500:
                raise
            raise protocol.EpisodeEnd(refusal_finish(e.status_code, e.body), e.body[:500]) from e
        return protocol.turn_from_message(out.choices[0].message, prefix=f"a{steps}")

    async def user_turn(_view: list[dict[str, Any]]) -> protocol.Turn:
        turn = UserTurn(task, list(state.messages), key, user_tools, guidelines)
        try:
            (reply,) = await asyncio.to_thread(user.respond, [turn])
        except ContextOverflow as e:  # the in-process user's engine cannot hold the view
            raise protocol.EpisodeEnd("max_context", str(e)) from None
        except LLMHTTPError as e:  # a served user refusing this request fails this trial
            if e.status_code >= 500:
                raise
            finish = refusal_finish(e.status_code, e.body)
            raise protocol.EpisodeEnd(
                "max_context" if finish == "max_context" else "user_error", e.body[:500]
            ) from None
        if reply is None:
            raise protocol.EpisodeEnd("max_context", "the user simulator's context is full")
        return as_turn(reply)

    return await protocol.play(state, agent, user_turn, domain.policy, "")


def trial_record(task_id: str, trial: int, state: protocol.Dialogue, verdict) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "trial": trial,
        "reward": verdict.reward if verdict else 0.0,
        "finish_reason": state.finish,
        "termination": state.termination,
        "turns": sum(m["role"] == "assistant" for m in state.messages),
        "tool_errors": state.errors,
        "reason": verdict.reason if verdict else (state.detail or state.finish),
    }


async def evaluate_served(
    urls,
    domain,
    tasks,
    user: UserSimulator,
    num_trials: int,
    log: TrialLog,
    checker,
    *,
    concurrency: int = 8,
    model: str | None = None,
    messages_log: TrialLog | None = None,
    **episode_kwargs,
) -> None:
    """Play every (task, trial) not in `log` against the served agent; log each as it finishes
    (`messages_log`, if given, also gets each trial's transcript for tau2's Results file)."""
    from data_agents.llm import LLMClient

    sem = asyncio.Semaphore(concurrency)
    async with LLMClient(urls, model=model, max_concurrency=concurrency) as client:

        async def one(task, trial: int):
            async with sem:
                state = await play_episode(
                    client, domain, task, user, key=f"{task.id}/{trial}", **episode_kwargs
                )
            verdict = (
                checker(domain, task, state.env, state.messages)
                if state.finish in protocol.SCORED_FINISHES
                else None
            )
            record = trial_record(task.id, trial, state, verdict)
            if messages_log is not None:
                messages_log.add([{"task_id": task.id, "trial": trial, "messages": state.messages}])
            log.add([record])

        await asyncio.gather(
            *(one(t, k) for t in tasks for k in range(num_trials) if not log.done(t.id, k))
        )
