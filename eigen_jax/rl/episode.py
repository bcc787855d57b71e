"""`Episode`: one recorded policy ↔ environment ↔ user dialogue, token-in/token-out.

Why a separate record: the learner must score exactly the ids the sampler saw and produced, so an
episode keeps the conversation's ids, which of them the policy generated, the sampler's
log-probability of each generated id (the behaviour policy of the GRPO importance weights) and the
span of every policy turn (the per-turn training layout cuts along them). The messages and the
checker's verdict travel along for metrics and inspection.

Per-token arrays are aligned with `tokens`: `policy_mask[t]` says token t was sampled by the policy
and `sampler_logprobs[t]` is log π_behaviour(tokens[t] | tokens[:t]) there (0 elsewhere).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from data_agents import dialogue as protocol
from data_agents.checkers.verdict import Verdict

# Why an episode ended (the dialogue protocol's ends): natural ends the checker scores; limits
# and protocol errors score 0 without asking the checker.
FINISH_REASONS = protocol.SCORED_FINISHES + protocol.LIMIT_FINISHES
SCORED_FINISHES = protocol.SCORED_FINISHES


@dataclasses.dataclass
class Episode:
    """A finished episode.

    tokens: [T] int32 conversation ids (agent view: system prompt, user, assistant, tool turns).
    policy_mask: [T] bool, True on ids the policy sampled (content, tool calls, end-of-turn id).
    sampler_logprobs: [T] float32, the sampler's log-probability of each policy id, 0 elsewhere.
    policy_turns: (start, end) token spans of the policy's generated ids, one per policy turn.
    reward: the checker's reward in {0, 1} (0 for limit finishes, see `FINISH_REASONS`).
    """

    task_id: str
    group_id: int
    sample_index: int
    tokens: np.ndarray
    policy_mask: np.ndarray
    sampler_logprobs: np.ndarray
    policy_turns: list[tuple[int, int]]
    reward: float
    finish_reason: str
    messages: list[dict[str, Any]]
    verdict: Verdict | None = None
    num_tool_errors: int = 0

    def __post_init__(self):
        self.tokens = np.asarray(self.tokens, np.int32)
        self.policy_mask = np.asarray(self.policy_mask, bool)
        self.sampler_logprobs = np.asarray(self.sampler_logprobs, np.float32)
        n = len(self.tokens)
        if (
            self.tokens.ndim != 1
            or self.policy_mask.shape != (n,)
            or self.sampler_logprobs.shape != (n,)
        ):
            raise ValueError(
                f"episode {self.task_id}/{self.sample_index}: tokens, policy_mask and "
                f"sampler_logprobs must be [T] arrays of one length, got "
                f"{self.tokens.shape}, {self.policy_mask.shape}, "
                f"{self.sampler_logprobs.shape}"
            )
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason {self.finish_reason!r} is not one of {FINISH_REASONS}")
        if self.reward not in (0.0, 1.0):
            raise ValueError(f"reward must be 0 or 1, got {self.reward}")
        covered = np.zeros(n, bool)
        for start, end in self.policy_turns:
            if not 0 < start < end <= n:
                raise ValueError(
                    f"policy turn ({start}, {end}) outside the {n} tokens (a turn "
                    "needs context before it)"
                )
            covered[start:end] = True
        if not np.array_equal(covered, self.policy_mask):
            raise ValueError("policy_mask must be exactly the union of policy_turns")

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def num_policy_tokens(self) -> int:
        return int(self.policy_mask.sum())

    @property
    def num_turns(self) -> int:
        """Policy turns (each sampled assistant message, tool-calling or not)."""
        return len(self.policy_turns)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (ids included) for rollout dumps and debugging."""
        return {
            "task_id": self.task_id,
            "group_id": self.group_id,
            "sample_index": self.sample_index,
            "reward": self.reward,
            "finish_reason": self.finish_reason,
            "num_turns": self.num_turns,
            "num_tool_errors": self.num_tool_errors,
            "tokens": self.tokens.tolist(),
            "policy_turns": [list(t) for t in self.policy_turns],
            "sampler_logprobs": self.sampler_logprobs[self.policy_mask].tolist(),
            "messages": self.messages,
            "verdict": self.verdict.to_json() if self.verdict is not None else None,
        }

    def transcript(self) -> dict[str, Any]:
        """What a reader needs to see what happened: the messages (tool calls included), the
        reward, why the episode ended and the checker's reason."""
        return {
            "task_id": self.task_id,
            "sample_index": self.sample_index,
            "reward": self.reward,
            "finish_reason": self.finish_reason,
            "num_tool_errors": self.num_tool_errors,
            "reason": self.verdict.reason if self.verdict is not None else None,
            "messages": self.messages,
        }
