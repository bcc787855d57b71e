"""Many episodes at once: policy ↔ environment ↔ user simulator, recorded token-in/token-out.

Why this shape: every policy turn of every live episode is decoded by ONE continuously batched
`Engine` (each episode is an engine session that keeps its KV cache between turns, so a turn
prefills only the tool results / user message appended since the previous one). Between engine
steps, finished turns are acted on: tool calls run in the episode's environment (malformed calls
become tool messages that report the parse error, as tool errors do), plain replies go to the user
simulator. The user simulator is stepped between policy steps (`submit`/`poll`): an in-process
user model decodes all pending user turns in its own continuously batched engine while the policy
keeps decoding the other episodes, instead of the policy idling through every user reply.

The agent is sampled with `views.agent_prompt` — the same system prompt and tool list it was
trained with (one gin binding sets both). Rewards come from the domain's checker on the final
environment and transcript; limit finishes (max steps, max tool errors, context or turn-length
overflow) score 0 without a checker call.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import gin
import numpy as np
from flax import nnx

from data_agents import dialogue as protocol
from eigen_jax.chat import views
from eigen_jax.chat.conversation import Conversation
from eigen_jax.chat.template import ChatTemplate
from eigen_jax.rl.episode import SCORED_FINISHES, Episode
from eigen_jax.rl.user_sim import UserSimulator, UserTurn, as_turn, as_user_simulator
from eigen_jax.sampling import Engine, SamplingParams


@gin.configurable
@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """Episode limits and the policy's sampling settings.

    max_steps: messages after the system prompt (user, assistant and tool messages each count;
        tau2 counts the same way); reaching it ends the episode with reward 0.
    max_errors: tool errors (failed or unparsable calls) allowed; one more ends with reward 0.
    """

    max_steps: int = 200
    max_errors: int = 10
    max_new_tokens: int = 512
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("max_steps", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"RolloutConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_errors < 0:
            raise ValueError(f"RolloutConfig.max_errors must be >= 0, got {self.max_errors}")

    def limits(self) -> protocol.Limits:
        """The episode limits as the dialogue protocol applies them (served evaluation too)."""
        return protocol.Limits(self.max_steps, self.max_errors)


@dataclasses.dataclass(frozen=True)
class EpisodeJob:
    """One episode to play: the task, its GRPO group and its index within the group."""

    task: Any
    group_id: int
    sample_index: int


Checker = Callable[[Any, Any, Any, list], Any]  # (domain, task, final_env, transcript) -> Verdict


def default_checker() -> Checker:
    """`data_agents.checkers.check`: declarative criteria and the task's code checker."""
    from data_agents.checkers import check

    return check


def sync_engine_params(engine: Engine, graphdef, params, rest) -> None:
    """Point the engine at new weights in place (same shapes/shardings: no re-compilation).

    The engine keeps the full `nnx.split(model)` state; the learner trains only `nnx.Param`s.
    """
    _, state = nnx.split(nnx.merge(graphdef, params, rest))
    engine.update_params(state)


class _Live:
    """One running episode: the agent's token conversation beside the protocol's `Dialogue`.

    The `Dialogue` (data_agents' one protocol) owns the shared transcript, tool execution (the
    user's calls run as the user), limits and stop signals; the `Conversation` holds the agent's
    view as tokens (append-only, so the engine session keeps its KV cache between turns).
    """

    def __init__(
        self,
        job: EpisodeJob,
        session: Hashable,
        env,
        chat: ChatTemplate,
        system: str,
        tools,
        config: RolloutConfig,
    ):
        self.job, self.session, self.config = job, session, config
        self.system = system
        self.conv = Conversation.start(chat, [{"role": "system", "content": system}], tools)
        self.dialogue = protocol.Dialogue(env, config.limits())
        self.sent = 0  # conversation ids the engine session already holds
        self.turns: list[tuple[int, int]] = []
        self.logprobs: list[np.ndarray] = []
        self.key = f"{job.task.id}/{job.group_id}/{job.sample_index}"

    @property
    def env(self):
        return self.dialogue.env

    @property
    def errors(self) -> int:
        return self.dialogue.errors

    @property
    def finish(self) -> str | None:
        return self.dialogue.finish

    def end(self, finish: str) -> None:
        self.dialogue.end(finish)

    def transcript(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.system}] + self.dialogue.messages

    def user_turn(self, tools=(), guidelines: str = protocol.DEFAULT_USER_GUIDELINES) -> UserTurn:
        return UserTurn(
            self.job.task, list(self.dialogue.messages), self.key, tuple(tools), guidelines
        )

    def add_user(self, reply) -> str | None:
        """Record the user's turn; returns who speaks next ("user" after its own tool calls)."""
        turn = as_turn(reply)
        nxt = self.dialogue.add("user", turn)
        if turn.content:  # the agent sees the user's words, never its tool calls or results
            self.conv.append_messages([{"role": "user", "content": turn.content}])
        return nxt

    def add_policy(self, ids: np.ndarray, logprobs: np.ndarray, finish_reason: str) -> str:
        """Record a sampled turn and act on it; returns 'tool', 'user' or 'done'."""
        start = len(self.conv.generation_prompt())
        parsed = self.conv.append_generated(ids)
        self.turns.append((start, start + len(ids)))
        self.logprobs.append(np.asarray(logprobs, np.float32))
        self.sent = len(self.conv)
        calls = [protocol.Call(c.id, c.name, c.arguments) for c in parsed.tool_calls]
        calls += [
            protocol.Call(
                f"parse_error_{len(self.turns)}_{k}", "invalid_tool_call", {}, err.to_tool_message()
            )
            for k, err in enumerate(parsed.errors)
        ]
        turn = protocol.Turn(parsed.content, tuple(calls))
        if finish_reason != "stop":  # cut off by max_new_tokens / the cache: nothing follows
            self.dialogue.add_truncated("assistant", parsed.content)
            return "done"
        n = len(self.dialogue.messages)
        nxt = self.dialogue.add("assistant", turn)
        names = {c.id: c.name for c in calls}
        results = [{**m, "name": names[m["tool_call_id"]]} for m in self.dialogue.messages[n + 1 :]]
        if results:  # all results of one assistant turn in one append (templates may merge them)
            self.conv.append_messages(results)
        if nxt is None:
            return "done"
        return "tool" if nxt == "assistant" else "user"

    def episode(self, reward: float, verdict) -> Episode:
        tokens = np.asarray(self.conv.tokens, np.int32)
        mask = np.zeros(len(tokens), bool)
        lps = np.zeros(len(tokens), np.float32)
        for (s, e), lp in zip(self.turns, self.logprobs):
            mask[s:e], lps[s:e] = True, lp
        return Episode(
            str(self.job.task.id),
            self.job.group_id,
            self.job.sample_index,
            tokens,
            mask,
            lps,
            list(self.turns),
            reward,
            self.finish,
            self.transcript(),
            verdict,
            self.dialogue.errors,
        )


class RolloutWorker:
    """Plays batches of episodes of one domain with one policy engine and one user simulator.

    `engine` holds the policy weights (update them with `sync_engine_params` after each learner
    step); its `num_slots` bounds how many episodes decode concurrently, the rest wait for a slot.
    `timings` holds the seconds of the last `run`: policy decoding + environment, user simulator,
    checker.
    """

    def __init__(
        self,
        engine: Engine,
        chat: ChatTemplate,
        domain,
        user: UserSimulator,
        config: RolloutConfig | None = None,
        checker: Checker | None = None,
    ):
        self.engine, self.chat, self.domain = engine, chat, domain
        self.user = as_user_simulator(user)
        self.config = config or RolloutConfig()
        self.checker = checker or default_checker()
        env = domain.make_env()
        self.system, self.tools = views.agent_prompt(domain.policy, env.tools_schema("assistant"))
        self.user_tools = tuple(env.tools_schema("user"))
        self.user_guidelines = protocol.user_guidelines(domain.name, bool(self.user_tools))
        self.params = SamplingParams(
            temperature=self.config.temperature,
            top_k=self.config.top_k,
            top_p=self.config.top_p,
            max_new_tokens=self.config.max_new_tokens,
            stop_token_ids=tuple(chat.stop_ids),
        )
        self.timings: dict[str, float] = {}
        self._runs = 0

    def run(self, jobs: Sequence[EpisodeJob], seed: int = 0) -> list[Episode]:
        """Play every job to its end; episodes come back in job order."""
        self._runs += 1
        live = [
            _Live(
                job,
                (self._runs, i),
                self.domain.make_env(job.task),
                self.chat,
                self.system,
                self.tools,
                self.config,
            )
            for i, job in enumerate(jobs)
        ]
        by_session = {s.session: s for s in live}
        asked: dict[int, _Live] = {}  # id(UserTurn) -> its episode, while the user answers
        t_user = 0.0
        t0 = time.perf_counter()
        waiting_user = list(live)  # every episode opens with the user's first message
        while True:
            # The user simulator and the policy engine advance in turns, one step each, so
            # episodes waiting for their user do not hold the policy's other episodes back.
            t = time.perf_counter()
            if waiting_user:
                turns = [s.user_turn(self.user_tools, self.user_guidelines) for s in waiting_user]
                asked.update((id(turn), s) for turn, s in zip(turns, waiting_user))
                self.user.submit(turns)
                waiting_user = []
            answered = self.user.poll()
            t_user += time.perf_counter() - t
            for turn, text in answered:
                s = asked.pop(id(turn))
                if text is None:  # the user model's context is full: a limit finish, reward 0
                    s.end("max_context")
                elif s.add_user(text) == "user":  # after its own tool calls the user goes on
                    waiting_user.append(s)
                    continue
                self._continue(s, seed)
            if self.engine.has_work():
                for c in self.engine.step():
                    s = by_session[c.session_id]
                    outcome = s.add_policy(c.token_ids, c.logprobs, c.finish_reason)
                    if outcome == "tool":
                        self._continue(s, seed)
                    elif outcome == "user":
                        waiting_user.append(s)
                    else:
                        self.engine.release(s.session)
            elif not waiting_user and not self.user.has_work():
                break
        t_play = time.perf_counter() - t0
        t = time.perf_counter()
        episodes = [self._score(s) for s in live]
        self.timings = {
            "policy_env_s": t_play - t_user,
            "user_s": t_user,
            "reward_s": time.perf_counter() - t,
        }
        return episodes

    def _continue(self, s: _Live, seed: int) -> None:
        """Submit the episode's next policy turn, or end it if it cannot have one."""
        if s.finish is None:
            prompt = s.conv.generation_prompt()
            if len(prompt) >= self.engine.max_len - 1:
                s.end("max_context")
            else:
                row_seed = zlib.crc32(f"{self.config.seed}/{seed}/{s.key}".encode())
                self.engine.submit(s.session, prompt[s.sent :], self.params, row_seed)
                return
        if s.sent:  # the session exists in the engine once a policy turn has been sampled
            self.engine.release(s.session)

    def _score(self, s: _Live) -> Episode:
        if s.finish in SCORED_FINISHES:
            verdict = self.checker(self.domain, s.job.task, s.env, s.transcript())
            return s.episode(float(verdict.reward), verdict)
        return s.episode(0.0, None)


def make_jobs(tasks: Sequence[Any], group_size: int, first_group_id: int = 0) -> list[EpisodeJob]:
    """`group_size` episodes of each task; group ids count up from `first_group_id`."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    return [
        EpisodeJob(task, first_group_id + g, k)
        for g, task in enumerate(tasks)
        for k in range(group_size)
    ]
