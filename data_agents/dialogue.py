"""One dialogue protocol: the record transcript, who sees what, stop signals, limits, the loop.

Why one module: synthesis (`agents/rollout.py`), served evaluation (`eigen_jax/eval/served_agent`)
and RL rollouts (`eigen_jax/rl/rollout`, token-level and batched) all play the same game — tau2's:
the agent greets, the user simulator opens, each side may call its own tools (the user only in
dual control, e.g. tau2 telecom, executed with `requestor="user"`), the user ends with a stop
signal. Whatever differs between them (batched token sampling, HTTP, caching) sits outside; the
transcript shape, the two views, the stop signals, the user's system prompt and the limits live
here so the three cannot drift apart (they did: three stop-token lists, two user prompts).

Transcript (the record contract): `{"role", "content", "tool_calls": [{id, name, arguments}],
"tool_call_id"}`; a tool message answers the call with that id, and belongs to the side that made
the call. tau2 semantics followed here: a user message carrying tool calls is not a stop; the user
keeps the turn after its own tool results; the agent never sees the user's tool calls or results;
the user never sees the agent's tool calls or results.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

# tau2's stop signals (tau2.user.base) and the terminations they mean. All three end the episode
# as a user stop that the checker scores (tau2's TerminationReason.USER_STOP).
STOP_SIGNALS = {
    "###STOP###": "user_stop",
    "###TRANSFER###": "transfer",
    "###OUT-OF-SCOPE###": "out_of_scope",
}
GREETING = "Hi! How can I help you today?"  # tau2's DEFAULT_FIRST_AGENT_MESSAGE

# For domains without tau2's guidelines (outfitter). tau2 domains use tau2's own files.
DEFAULT_USER_GUIDELINES = """You are playing a customer who contacts a customer-service agent.
Follow your instructions below. Reveal information only when the agent needs it, one request at a
time, and never invent facts that are not in your instructions. Answer the agent's questions
truthfully from your instructions. When your goal is met, or the agent cannot help you, end the
conversation by writing ###STOP### alone. If you are transferred to a human, write ###TRANSFER###.
If the agent's request is outside your instructions, write ###OUT-OF-SCOPE###."""
TAU2_DOMAINS = ("airline", "retail", "telecom")

# Episode ends. Natural ends are scored by the checker; every other end scores 0 without it.
SCORED_FINISHES = ("user_stop", "agent_stop")
LIMIT_FINISHES = (
    "max_steps",
    "max_errors",
    "max_context",
    "turn_truncated",
    "agent_error",
    "user_error",
)


def stop_signal(text: str | None) -> str | None:
    """The stop signal a message's text carries, if any."""
    for token in STOP_SIGNALS:
        if text and token in text:
            return token
    return None


def termination_of(text: str | None) -> str | None:
    """user_stop | transfer | out_of_scope for a text carrying a stop signal, else None."""
    token = stop_signal(text)
    return STOP_SIGNALS[token] if token else None


def is_tau2_domain(name: str) -> bool:
    return name.removeprefix("tau2:") in TAU2_DOMAINS and (
        name.startswith("tau2:") or name in TAU2_DOMAINS
    )


def user_guidelines(domain_name: str, has_user_tools: bool) -> str:
    """The user simulator's guidelines for a domain: tau2's own files for tau2 domains (the tools
    variant when the user has tools), else `DEFAULT_USER_GUIDELINES`."""
    if is_tau2_domain(domain_name):
        from tau2.user.user_simulator import get_global_user_sim_guidelines

        return get_global_user_sim_guidelines(use_tools=has_user_tools)
    return DEFAULT_USER_GUIDELINES


def _indent(text: str) -> str:
    return "\n".join("\t" + line if line.strip() else line for line in str(text).split("\n"))


def scenario_text(task: Any) -> str:
    """A task's user scenario as tau2 prints it (`str(tau2 UserScenario)`), for dict or model."""
    task = task.model_dump(mode="json") if hasattr(task, "model_dump") else dict(task or {})
    scen = task.get("user_scenario") or {}
    ins = scen.get("instructions")
    lines = []
    if scen.get("persona") is not None:
        lines += ["Persona:", _indent(scen["persona"])]
    if isinstance(ins, dict):
        body = [
            f"Domain: {ins.get('domain')}",
            f"Reason for call:\n{_indent(ins.get('reason_for_call', ''))}",
        ]
        for key, title in (("known_info", "Known info"), ("unknown_info", "Unknown info")):
            if ins.get(key) is not None:
                body.append(f"{title}:\n{_indent(ins[key])}")
        body.append(f"Task instructions:\n{_indent(ins.get('task_instructions', ''))}")
        ins = "\n".join(body)
    lines += ["Instructions:", _indent(ins if ins is not None else "")]
    return "\n".join(lines)


def user_system_prompt(task: Any, guidelines: str = DEFAULT_USER_GUIDELINES) -> str:
    """tau2's user system prompt (`tau2.user.user_simulator.SYSTEM_PROMPT`) for `task`."""
    return f"{guidelines}\n\n<scenario>\n{scenario_text(task)}\n</scenario>".strip()


def call_owners(messages: Sequence[dict[str, Any]]) -> dict[str, str]:
    """tool_call_id -> the role ("assistant" | "user") whose message made that call."""
    owners = {}
    for m in messages:
        for c in m.get("tool_calls") or []:
            owners[str(c["id"])] = m["role"]
    return owners


def agent_view(messages: Sequence[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """The agent's view: `system`, then the user's texts, its own messages and tool results."""
    owners = call_owners(messages)
    view = [{"role": "system", "content": system}]
    for m in messages:
        role = m["role"]
        if role == "user":
            if m.get("content"):
                view.append({"role": "user", "content": m["content"]})
        elif role == "assistant":
            view.append(dict(m))
        elif role == "tool" and owners.get(str(m.get("tool_call_id"))) != "user":
            view.append(dict(m))
    return view


def user_view(
    messages: Sequence[dict[str, Any]], system: str, greeting: bool = True
) -> list[dict[str, Any]]:
    """The user simulator's role-flipped view (tau2's `UserState.flip_roles`): the greeting and
    the agent's texts become "user" messages, the user's own messages (tool calls included)
    "assistant" messages, its own tool results stay; consecutive agent texts are merged."""
    owners = call_owners(messages)
    view: list[dict[str, Any]] = [{"role": "system", "content": system}]
    if greeting:
        view.append({"role": "user", "content": GREETING})
    for m in messages:
        role = m["role"]
        if role == "user":
            out: dict[str, Any] = {"role": "assistant", "content": m.get("content") or ""}
            if m.get("tool_calls"):
                out["tool_calls"] = [dict(c) for c in m["tool_calls"]]
            view.append(out)
        elif role == "assistant" and m.get("content"):
            last = view[-1]
            if last["role"] == "user" and not last.get("tool_calls"):
                last["content"] = f"{last['content']}\n{m['content']}"
            else:
                view.append({"role": "user", "content": m["content"]})
        elif role == "tool" and owners.get(str(m.get("tool_call_id"))) == "user":
            view.append(
                {
                    "role": "tool",
                    "content": m.get("content") or "",
                    "tool_call_id": m["tool_call_id"],
                }
            )
    return view


def to_wire(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record messages -> OpenAI wire format (tool-call arguments as JSON strings, keys sorted:
    the same request text every time, so response caches keyed on it hit)."""
    out = []
    for m in messages:
        w: dict[str, Any] = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            w["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {
                        "name": c["name"],
                        "arguments": json.dumps(
                            c["arguments"], ensure_ascii=False, sort_keys=True, default=str
                        ),
                    },
                }
                for c in m["tool_calls"]
            ]
        if m.get("tool_call_id"):
            w["tool_call_id"] = m["tool_call_id"]
        out.append(w)
    return out


@dataclasses.dataclass(frozen=True)
class Call:
    """A tool call of a turn; `error` set when its arguments were unusable (the error text is
    returned to the caller as the tool's result, and counts as a tool error)."""

    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclasses.dataclass(frozen=True)
class Turn:
    """What one side said: text and tool calls (either may be empty)."""

    content: str = ""
    calls: tuple[Call, ...] = ()


@dataclasses.dataclass(frozen=True)
class Limits:
    """Episode limits, one meaning everywhere.

    max_steps: messages after the system prompt (user, assistant and tool messages each count);
        reaching it ends the episode (`max_steps`, reward 0).
    max_errors: tool errors (failed or unparsable calls) allowed; one more ends it (`max_errors`).
    """

    max_steps: int = 200
    max_errors: int = 10

    def __post_init__(self):
        if self.max_steps < 1 or self.max_errors < 0:
            raise ValueError(f"need max_steps >= 1 and max_errors >= 0, got {self}")


class EpisodeEnd(Exception):
    """Raised by a speaker whose turn cannot be produced (e.g. the agent server refuses the
    prompt as too long: `max_context`); the episode ends with `finish`, reward 0."""

    def __init__(self, finish: str, detail: str = ""):
        super().__init__(f"{finish}: {detail}")
        self.finish, self.detail = finish, detail


def turn_from_message(message: Any, prefix: str = "call") -> Turn:
    """An OpenAI chat-completion message (object or dict) -> `Turn` (arguments parsed
    defensively by `agents.parsing.parse_tool_calls`; unusable ones keep the call with an error)."""
    from data_agents.agents.parsing import parse_tool_calls

    if isinstance(message, dict):
        from types import SimpleNamespace as NS

        calls = [
            NS(id=c.get("id"), function=NS(**c.get("function", {})))
            for c in message.get("tool_calls") or []
        ]
        message = NS(content=message.get("content"), tool_calls=calls)
    return Turn((message.content or "").strip(), tuple(parse_tool_calls(message, prefix)))


class Dialogue:
    """One episode's shared transcript and counters: a small state machine both loops drive.

    `add(role, turn)` records a turn, runs its tool calls in the environment as `role`, applies
    the limits and stop signals, and says who speaks next (None: the episode is over, `finish`
    says why and `termination` which stop signal ended it).
    """

    def __init__(self, env: Any, limits: Limits | None = None):
        self.env, self.limits = env, limits or Limits()
        self.messages: list[dict[str, Any]] = []
        self.steps = self.errors = 0
        self.finish: str | None = None
        self.termination: str | None = None
        self.detail = ""

    def end(self, finish: str, detail: str = "") -> None:
        if self.finish is None:
            self.finish, self.termination, self.detail = finish, finish, detail

    def _count(self, n: int) -> None:
        self.steps += n
        if self.steps >= self.limits.max_steps:
            self.end("max_steps")

    def _run(self, role: str, call: Call) -> dict[str, Any]:
        if call.error:
            content, error = call.error, True
        else:
            result = self.env.call(call.name, call.arguments, role)
            content, error = result.content, result.error
        self.errors += int(error)
        return {"role": "tool", "content": content, "tool_call_id": call.id}

    def add_truncated(self, role: str, content: str) -> None:
        """Record a turn cut off by the token limit: nothing can follow it (`turn_truncated`)."""
        self.messages.append({"role": role, "content": content})
        self._count(1)
        self.end("turn_truncated")

    def add(self, role: str, turn: Turn) -> str | None:
        """Record `role`'s ("user" | "assistant") turn; return who speaks next, or None."""
        if self.finish is not None:
            return None
        msg: dict[str, Any] = {"role": role, "content": turn.content}
        if turn.calls:
            msg["tool_calls"] = [c.record() for c in turn.calls]
        self.messages.append(msg)
        if not turn.content and not turn.calls:  # tau2: an empty message is a protocol error
            self.end("user_error" if role == "user" else "agent_error", "empty message")
        results = [self._run(role, c) for c in turn.calls]
        self.messages.extend(results)
        if not turn.calls and stop_signal(turn.content) and self.finish is None:
            self.finish = "user_stop" if role == "user" else "agent_stop"
            self.termination = termination_of(turn.content) if role == "user" else "agent_stop"
        if self.errors > self.limits.max_errors:
            self.end("max_errors")
        self._count(1 + len(results))
        if self.finish is not None:
            return None
        if turn.calls:
            return role
        return "assistant" if role == "user" else "user"


Speaker = Callable[[list[dict[str, Any]]], Awaitable[Turn]]  # its view -> its turn


async def play(
    dialogue: Dialogue, agent: Speaker, user: Speaker, agent_system: str, user_system: str
) -> Dialogue:
    """Drive `dialogue` to its end: the user opens (after tau2's greeting), each side speaks on
    its own view; a speaker raising `EpisodeEnd` ends the episode with that finish."""
    who: str | None = "user"
    while who is not None:
        try:
            if who == "user":
                turn = await user(user_view(dialogue.messages, user_system))
            else:
                turn = await agent(agent_view(dialogue.messages, agent_system))
        except EpisodeEnd as e:
            dialogue.end(e.finish, e.detail)
            break
        who = dialogue.add(who, turn)
    return dialogue
