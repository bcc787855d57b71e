"""User simulators for RL rollouts: who writes the "user" turns of an episode.

Why several backends behind one batched call: the paper's point is that the user model must be the
user-SFT model (an off-the-shelf user corrupts rewards), frozen during RL. It can run in-process
on its own sampling `Engine` (no server needed, CPU quickstart), behind an SGLang/OpenAI server
(`data_agents.llm`), or — for tests and the offline domain — be the domain's scripted reference
user. Every backend answers a *batch* of pending user turns at once, so a model user decodes all of
them in one continuously batched engine pass.

A model user is always sampled on `views.user_messages(messages, task, guidelines)`, the
role-flipped view it was trained on (user-SFT renders exactly that view), with the user's own
tools (tau2 telecom's dual control). A reply is a `data_agents.dialogue.Turn` (text and tool
calls; a backend may also answer a plain string); the rollout runs the user's calls in the
environment as the user.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any

import gin

from data_agents import dialogue as protocol
from eigen_jax import scopes
from eigen_jax.chat import views
from eigen_jax.chat.conversation import Conversation
from eigen_jax.chat.template import ChatTemplate
from eigen_jax.sampling import Request, SamplingParams
from eigen_jax.sampling.config import SamplerConfig


@dataclasses.dataclass(frozen=True)
class UserTurn:
    """A pending user turn: the task and the dialogue so far (record-shaped messages, agent view,
    no system message). An empty `messages` asks for the opening message."""

    task: Any  # data_agents.domains.Task
    messages: list[dict[str, Any]]
    key: str = ""  # stable per episode: seeds sampling backends reproducibly
    tools: tuple[dict[str, Any], ...] = ()  # the user's own tool schemas (dual control)
    guidelines: str = protocol.DEFAULT_USER_GUIDELINES  # the domain's (tau2's for tau2 domains)

    def view(self) -> list[dict[str, Any]]:
        """The role-flipped view the user model is sampled on."""
        return views.user_messages(self.messages, _task_dict(self.task), self.guidelines)


def as_turn(reply: Any) -> protocol.Turn:
    """A backend's reply as a `Turn` (a plain string is text without tool calls)."""
    return reply if isinstance(reply, protocol.Turn) else protocol.Turn(str(reply).strip())


class UserSimulator(abc.ABC):
    """Batched user simulator: one reply text per pending turn, in order.

    Rollouts drive it through `submit` / `poll` / `has_work`, so a backend that decodes on this
    machine (the in-process model) advances a little per `poll` while the policy engine keeps
    decoding other episodes; the default answers a whole batch at `submit` via `respond`.
    """

    _answered: list[tuple[UserTurn, str]] = []  # replaced per instance by the first `submit`

    @abc.abstractmethod
    def respond(self, turns: Sequence[UserTurn]) -> list[protocol.Turn | str]:
        """Replies (`Turn` or text); a text with a stop signal and no tool call ends the episode."""

    def submit(self, turns: Sequence[UserTurn]) -> None:
        """Queue pending turns; their replies come back from later `poll` calls."""
        if turns:
            self._answered = self._answered + list(zip(turns, self.respond(turns)))

    def poll(self) -> list[tuple[UserTurn, protocol.Turn | str | None]]:
        """Advance the backend; return (turn, reply) for the turns answered since the last call;
        reply None: the simulator cannot answer (its context is full) and the episode ends."""
        out, self._answered = self._answered, []
        return out

    def has_work(self) -> bool:
        """Whether submitted turns are still unanswered (or answered but not yet polled)."""
        return bool(self._answered)


class _RespondOnly(UserSimulator):
    """Adapts any object with a batched `respond(turns)` (a duck-typed simulator)."""

    def __init__(self, user: Any):
        self.user = user

    def respond(self, turns: Sequence[UserTurn]) -> list[protocol.Turn | str]:
        return list(self.user.respond(turns))


def as_user_simulator(user: Any) -> UserSimulator:
    """`user` itself if it is a `UserSimulator`, else an adapter around its `respond`."""
    if isinstance(user, UserSimulator):
        return user
    if not callable(getattr(user, "respond", None)):
        raise TypeError(
            f"a user simulator needs a respond(turns) method; got {type(user).__name__}"
        )
    return _RespondOnly(user)


class ContextOverflow(ValueError):
    """A user turn's prompt does not fit the user model's engine (`max_len`)."""


def _task_dict(task: Any) -> dict[str, Any]:
    return task.model_dump(mode="json") if hasattr(task, "model_dump") else dict(task)


def _as_task(task: Any) -> Any:
    """A `Task` (what a domain's reference user takes) from a task or its JSON dict."""
    if hasattr(task, "model_dump"):
        return task
    from data_agents.domains.task import Task

    return Task.model_validate(task)


def _seed(key: str, turn: int, base: int) -> int:
    return zlib.crc32(f"{base}/{key}/{turn}".encode()) % (2**32)


class ReferenceUserSimulator(UserSimulator):
    """A domain's scripted user (`Domain.reference_user`; deterministic; tests and offline runs).
    Without a domain: the outfitter domain's `ReferenceUser`."""

    def __init__(self, max_turns: int | None = None, domain: Any = None):
        if domain is None:
            from data_agents.domains.outfitter.reference_user import ReferenceUser

            self._make = ReferenceUser
        else:
            self._make = domain.reference_user
        self.max_turns = max_turns

    def respond(self, turns: Sequence[UserTurn]) -> list[str]:
        out = []
        for turn in turns:
            user = self._make(_as_task(turn.task), self.max_turns)
            out.append(user.first_message() if not turn.messages else user.respond(turn.messages))
        return out


@gin.configurable(denylist=["model", "chat", "mesh"])
class ModelUserSimulator(UserSimulator):
    """An eigen-jax model (the user-SFT checkpoint) sampled in-process on its own `Engine`.

    The engine's size is `sampler`, by default the gin scope `user/SamplerConfig` (which inherits
    the policy's unscoped sizes): `num_slots` (user turns decoded at once) and `max_len` (the
    longest flipped-view prompt plus reply) bound its per-step cost, so size them to the rollout
    (e.g. one slot per episode of a GRPO round, the user-SFT sequence length).

    Each pending turn is a fresh single-turn request of the flipped view: the flipped view merges
    and drops messages as the dialogue grows, so it is not an append-only token sequence and cannot
    reuse the previous turn's cache.
    """

    def __init__(
        self,
        model,
        chat: ChatTemplate,
        *,
        sampler: SamplerConfig | None = None,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        mesh=None,
    ):
        self.chat = chat
        params = sampling or SamplingParams(temperature=1.0, max_new_tokens=128)
        self.params = params.replace(stop_token_ids=tuple(chat.stop_ids))
        self.seed = seed
        self.engine = (sampler or scopes.configured(SamplerConfig, scopes.USER)).engine(model, mesh)
        self._calls = 0
        self._pending: dict[Any, UserTurn] = {}  # engine session id -> the turn it answers
        self._overflowed: list[tuple[UserTurn, None]] = []

    @classmethod
    def from_pretrained(cls, hf_dir: str, mesh=None, **kwargs) -> ModelUserSimulator:
        from eigen_jax import models

        model, _ = models.from_pretrained(hf_dir, mesh=mesh)
        sim = cls(model, ChatTemplate.from_pretrained(hf_dir), mesh=mesh, **kwargs)
        sim.hf_dir = hf_dir  # which checkpoint plays the user (evaluation logs record it)
        return sim

    def _request(self, turn: UserTurn) -> Request:
        prompt = Conversation.start(
            self.chat, turn.view(), list(turn.tools) or None
        ).generation_prompt()
        if len(prompt) > self.engine.max_len - 1:
            raise ContextOverflow(
                f"user-simulator prompt of {len(prompt)} tokens exceeds the "
                f"user engine's max_len={self.engine.max_len}; raise max_len"
            )
        self._calls += 1
        return Request(
            ("user", self._calls),
            prompt,
            self.params,
            _seed(turn.key, len(turn.messages), self.seed),
        )

    def _reply(self, completion) -> protocol.Turn:
        """The sampled user turn; malformed tool calls come back as calls with an error."""
        parsed = self.chat.parse(completion.token_ids)
        calls = [
            protocol.Call(c.id or f"user_call_{self._calls}_{i}", c.name, c.arguments)
            for i, c in enumerate(parsed.tool_calls)
        ]
        calls += [
            protocol.Call(
                f"user_error_{self._calls}_{i}", "invalid_tool_call", {}, e.to_tool_message()
            )
            for i, e in enumerate(parsed.errors)
        ]
        return protocol.Turn(parsed.content.strip(), tuple(calls))

    def respond(self, turns: Sequence[UserTurn]) -> list[protocol.Turn]:
        if not turns:
            return []
        return [self._reply(c) for c in self.engine.run([self._request(t) for t in turns])]

    def submit(self, turns: Sequence[UserTurn]) -> None:
        """Queue turns; a turn whose flipped view does not fit the engine is answered `None`
        (the rollout ends that episode as `max_context`) instead of failing the whole batch."""
        for turn in turns:
            try:
                r = self._request(turn)
            except ContextOverflow:
                self._overflowed.append((turn, None))
                continue
            self._pending[r.session_id] = turn
            self.engine.submit(r.session_id, r.token_ids, r.params, r.seed)

    def poll(self) -> list[tuple[UserTurn, protocol.Turn | None]]:
        """One engine step: admit/prefill queued turns, decode up to `steps_per_sync` tokens."""
        out, self._overflowed = self._overflowed, []
        if self.engine.has_work():
            for c in self.engine.step():
                self.engine.release(c.session_id)
                out.append((self._pending.pop(c.session_id), self._reply(c)))
        return out

    def has_work(self) -> bool:
        return bool(self._pending) or bool(self._overflowed)


class ServedUserSimulator(UserSimulator):
    """A user model behind an OpenAI-compatible server (SGLang), via `data_agents.llm.LLMClient`.

    All pending turns are sent concurrently; the client owns retries and load balancing.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        temperature: float = 1.0,
        max_tokens: int = 256,
        model: str | None = None,
        seed: int = 0,
        client_kwargs: dict[str, Any] | None = None,
    ):
        self.urls, self.model = urls, model
        self.temperature, self.max_tokens, self.seed = temperature, max_tokens, seed
        self.client_kwargs = dict(client_kwargs or {})

    def respond(self, turns: Sequence[UserTurn]) -> list[protocol.Turn]:
        return asyncio.run(self._respond(list(turns))) if turns else []

    async def _respond(self, turns: list[UserTurn]) -> list[protocol.Turn]:
        from data_agents.llm import LLMClient

        async with LLMClient(self.urls, model=self.model, **self.client_kwargs) as client:

            async def one(turn: UserTurn) -> protocol.Turn:
                out = await client.chat(
                    protocol.to_wire(turn.view()),
                    tools=list(turn.tools) or None,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    use_cache=False,
                    seed=_seed(turn.key, len(turn.messages), self.seed),
                )
                return protocol.turn_from_message(
                    out.choices[0].message, prefix=f"user_{turn.key}_{len(turn.messages)}"
                )

            return list(await asyncio.gather(*(one(t) for t in turns)))


@gin.configurable
def make_user_simulator(
    kind: str = "reference",
    hf_dir: str | None = None,
    urls: str | Sequence[str] | None = None,
    mesh=None,
    domain: Any = None,
    **kwargs,
) -> UserSimulator:
    """`reference` (the scripted user of `domain`, `Domain.reference_user`; outfitter's when no
    domain is given), `model` (in-process, from `hf_dir`) or `served` (an OpenAI-compatible server
    at `urls`)."""
    if kind == "reference":
        return ReferenceUserSimulator(domain=domain, **kwargs)
    if kind == "model":
        if not hf_dir:
            raise ValueError("a 'model' user simulator needs hf_dir (the user-SFT checkpoint)")
        return ModelUserSimulator.from_pretrained(hf_dir, mesh=mesh, **kwargs)
    if kind == "served":
        if not urls:
            raise ValueError("a 'served' user simulator needs urls of an OpenAI-compatible server")
        return ServedUserSimulator(urls, **kwargs)
    raise ValueError(f"unknown user simulator kind {kind!r}; expected reference, model or served")


__all__ = [
    "ModelUserSimulator",
    "ReferenceUserSimulator",
    "ServedUserSimulator",
    "UserSimulator",
    "UserTurn",
    "as_turn",
    "as_user_simulator",
    "make_user_simulator",
]
