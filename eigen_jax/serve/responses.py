"""Turn a finished `Completion` into the response bodies of `/generate` and chat completions.

Kept apart from the HTTP layer so the mapping (stop trimming, finish reasons, logprob triples,
Hermes tool calls -> OpenAI `tool_calls`) is a pure function of ids that tests can drive with
canned generations.

Conventions, following SGLang:
  * `output_ids` keep the stop token (the policy sampled it; RL needs its logprob), while `text`
    leaves the matched stop token or stop string out unless `no_stop_trim`;
  * `meta_info.finish_reason` is `{"type": "stop", "matched": id_or_str}` or
    `{"type": "length", "length": n}`;
  * `output_token_logprobs` are `[logprob, token_id, text_or_None]` triples.
A chat turn whose tool-call block cannot be parsed is returned as plain content (the text the
model wrote), never dropped, with finish reason "stop".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from eigen_jax.chat.template import ChatTemplate
from eigen_jax.chat.tool_parsers import split_reasoning
from eigen_jax.sampling.engine import Completion
from eigen_jax.serve import protocol


def finish_reason_info(completion: Completion) -> dict[str, Any]:
    if completion.finish_reason == "length":
        return {"type": "length", "length": completion.num_tokens}
    return {"type": "stop", "matched": completion.stop}


def output_text(
    completion: Completion,
    decode: Callable[[Sequence[int], bool], str],
    skip_special_tokens: bool = True,
    no_stop_trim: bool = False,
) -> str:
    """Detokenized turn; the matched stop token / stop string is trimmed unless `no_stop_trim`."""
    ids = [int(t) for t in completion.token_ids]
    stopped_by_id = completion.finish_reason == "stop" and isinstance(completion.stop, int)
    if stopped_by_id and not no_stop_trim:
        ids = ids[:-1]
    text = decode(ids, skip_special_tokens)
    if isinstance(completion.stop, str) and not no_stop_trim:
        at = text.find(completion.stop)
        if at >= 0:
            text = text[:at]
    return text


def generate_response(
    completion: Completion,
    *,
    decode: Callable[[Sequence[int], bool], str],
    request_id: str,
    prompt_tokens: int,
    return_logprob: bool = False,
    return_text_in_logprobs: bool = False,
    skip_special_tokens: bool = True,
    no_stop_trim: bool = False,
    latency_s: float | None = None,
) -> protocol.GenerateResponse:
    """SGLang `/generate` body for one prompt."""
    ids = [int(t) for t in completion.token_ids]
    meta: dict[str, Any] = {
        "id": request_id,
        "finish_reason": finish_reason_info(completion),
        "prompt_tokens": int(prompt_tokens),
        "completion_tokens": len(ids),
        "cached_tokens": 0,
    }
    if return_logprob:
        meta["output_token_logprobs"] = [
            [float(lp), t, decode([t], False) if return_text_in_logprobs else None]
            for lp, t in zip(completion.logprobs, ids)
        ]
    if latency_s is not None:
        meta["e2e_latency"] = float(latency_s)
    return protocol.GenerateResponse(
        text=output_text(completion, decode, skip_special_tokens, no_stop_trim),
        output_ids=ids,
        meta_info=meta,
    )


def assistant_message(
    completion: Completion, chat: ChatTemplate, parse_tool_calls: bool
) -> tuple[protocol.ChatMessageOut, bool]:
    """(OpenAI assistant message, whether it carries tool calls) for one generated turn."""
    ids = [int(t) for t in completion.token_ids]
    if isinstance(completion.stop, str):
        text = chat.decode(ids)
        text = text[: text.find(completion.stop)] if completion.stop in text else text
    else:
        while ids and ids[-1] in chat.stop_ids:
            ids.pop()
        text = chat.decode(ids)
    if parse_tool_calls:
        parsed = chat.parse_text(text)
        if not parsed.errors:
            calls = [
                protocol.ToolCallOut(
                    id=f"call_{uuid.uuid4().hex[:24]}",
                    function=protocol.FunctionCall(name=c.name, arguments=json.dumps(c.arguments)),
                )
                for c in parsed.tool_calls
            ]
            message = protocol.ChatMessageOut(
                content=parsed.content if parsed.content or not calls else None,
                tool_calls=calls or None,
                reasoning_content=parsed.reasoning,
            )
            return message, bool(calls)
    reasoning, content = split_reasoning(text.removesuffix(chat.end_of_turn_text))
    return protocol.ChatMessageOut(content=content, reasoning_content=reasoning), False


def token_logprobs(completion: Completion, chat: ChatTemplate) -> protocol.ChoiceLogprobs:
    """OpenAI `logprobs.content`: every sampled token (stop token included) with its logprob."""
    entries = []
    for token, logprob in zip(completion.token_ids, completion.logprobs):
        text = chat.decode([int(token)])
        entries.append(
            protocol.TokenLogprob(
                token=text, logprob=float(logprob), bytes=list(text.encode("utf-8"))
            )
        )
    return protocol.ChoiceLogprobs(content=entries)


def chat_response(
    completion: Completion,
    chat: ChatTemplate,
    *,
    model: str,
    request_id: str,
    created: int,
    prompt_tokens: int,
    parse_tool_calls: bool,
    logprobs: bool = False,
) -> protocol.ChatCompletionResponse:
    """OpenAI chat completion body with one choice."""
    message, has_calls = assistant_message(completion, chat, parse_tool_calls)
    if completion.finish_reason == "length":
        finish = "length"
    else:
        finish = "tool_calls" if has_calls else "stop"
    choice = protocol.ChatChoice(
        message=message,
        finish_reason=finish,
        logprobs=token_logprobs(completion, chat) if logprobs else None,
    )
    n = completion.num_tokens
    return protocol.ChatCompletionResponse(
        id=request_id,
        created=created,
        model=model,
        choices=[choice],
        usage=protocol.Usage(
            prompt_tokens=prompt_tokens, completion_tokens=n, total_tokens=prompt_tokens + n
        ),
    )
