"""Typed views of server responses and the client's token accounting.

Chat completions are parsed into the ``openai`` package's own ``ChatCompletion`` model (any
OpenAI-compatible server speaks it); SGLang's native ``/generate`` has no such package type, so
``GenerateOutput`` is defined here from its documented response shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from data_agents.llm.errors import LLMResponseError


def _logprob_column(entries: Any, field: str) -> tuple[list[float | None], list[int]]:
    """SGLang logprob entries are ``[logprob, token_id, token_text_or_None]`` triples."""
    if not isinstance(entries, list):
        raise LLMResponseError(
            f"/generate meta_info.{field} should be a list, got {entries!r:.200}"
        )
    logprobs, ids = [], []
    for entry in entries:
        if not isinstance(entry, (list, tuple)) or len(entry) < 2:
            raise LLMResponseError(f"/generate meta_info.{field} entry malformed: {entry!r:.200}")
        logprobs.append(None if entry[0] is None else float(entry[0]))
        ids.append(int(entry[1]))
    return logprobs, ids


@dataclasses.dataclass(frozen=True)
class GenerateOutput:
    """One ``/generate`` result.

    ``output_logprobs[i]`` is the sampler's log-probability of ``output_ids[i]`` (present when
    the request set ``return_logprob``); ``input_logprobs`` covers the prompt from
    ``logprob_start_len`` on (its first entry is None: nothing predicts the first token).
    """

    text: str
    output_ids: list[int]
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    output_logprobs: list[float] | None
    input_logprobs: list[float | None] | None
    input_ids: list[int] | None
    raw: dict

    @classmethod
    def from_response(cls, raw: Any) -> GenerateOutput:
        if not isinstance(raw, dict) or "meta_info" not in raw:
            raise LLMResponseError(f"/generate response lacks meta_info: {raw!r:.300}")
        meta = raw["meta_info"]
        finish = meta.get("finish_reason")
        finish_type = finish.get("type") if isinstance(finish, dict) else finish
        output_ids = raw.get("output_ids")
        out_lp = in_lp = in_ids = None
        if "output_token_logprobs" in meta:
            out_lp, lp_ids = _logprob_column(meta["output_token_logprobs"], "output_token_logprobs")
            if output_ids is None:
                output_ids = lp_ids
            elif list(output_ids) != lp_ids:
                raise LLMResponseError(
                    f"/generate output_ids {output_ids} disagree with logprob token ids {lp_ids}"
                )
        if "input_token_logprobs" in meta:
            in_lp, in_ids = _logprob_column(meta["input_token_logprobs"], "input_token_logprobs")
        try:
            return cls(
                text=raw.get("text", ""),
                output_ids=[int(t) for t in (output_ids or [])],
                finish_reason=finish_type,
                prompt_tokens=int(meta.get("prompt_tokens", 0)),
                completion_tokens=int(meta.get("completion_tokens", 0)),
                cached_tokens=int(meta.get("cached_tokens", 0) or 0),
                output_logprobs=out_lp,
                input_logprobs=in_lp,
                input_ids=in_ids,
                raw=raw,
            )
        except (TypeError, ValueError) as err:
            raise LLMResponseError(f"/generate response has a malformed field: {err}") from err


@dataclasses.dataclass
class TokenUsage:
    """Running totals. The client keeps one for calls sent over the network and one for calls
    answered from the cache, so ``client.usage`` is what was actually paid for."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.requests += 1
        self.prompt_tokens += int(prompt_tokens or 0)
        self.completion_tokens += int(completion_tokens or 0)
