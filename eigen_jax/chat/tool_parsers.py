"""Tool-call parsers: decoded assistant text -> content, reasoning, tool calls and parse errors.

A policy model under RL emits malformed calls routinely (truncated JSON, a missing name, prose
inside the tag). Those are part of the episode, not crashes: every parser here returns a
`ParsedAssistant` whose `errors` list carries one `ToolCallParseError` per bad call, and the
rollout reports each error back to the model as a tool message. Parsers never raise on model
output; they raise only on programming errors (an unknown parser name).

Two formats are supported:
  * ``hermes`` (Hermes / Qwen2.5 / Qwen3 / our tiny family): zero or more
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks anywhere in the turn;
    the text outside the blocks is the content.
  * ``llama3_json`` (Llama 3.1 JSON tool calling): the whole turn is one or more JSON objects
    ``{"name": ..., "parameters": {...}}`` (``arguments`` accepted too), optionally after
    ``<|python_tag|>`` and separated by ``;``. A turn that does not start with ``{`` is content.

Both also split a leading ``<think>...</think>`` reasoning block off the content (Qwen3 emits
one, possibly empty, in every turn), so content compares equal to what a user of the model sees.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

# Checked before any json call (the C decoder recurses per nesting level: deep input raises
# RecursionError, which is not a JSONDecodeError). Mirrors data_agents.agents.parsing, which this
# layer may not import.
MAX_CALL_CHARS = 1_000_000
MAX_CALL_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_bounds_problem(text: str) -> str | None:
    """Why `text` must not reach the JSON decoder (too long, nested too deep), or None."""
    if len(text) > MAX_CALL_CHARS:
        return f"tool call too large: {len(text)} characters (limit {MAX_CALL_CHARS})"
    depth = 0
    for ch in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth = depth + 1 if ch in "[{" else max(0, depth - 1)
        if depth > MAX_CALL_DEPTH:
            return f"JSON nested deeper than {MAX_CALL_DEPTH} levels"
    return None


_THINK_RE = re.compile(r"^\s*(?:<think>)?(.*?)</think>", re.DOTALL)
_HERMES_OPEN, _HERMES_CLOSE = "<tool_call>", "</tool_call>"
_PYTHON_TAG = "<|python_tag|>"


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """One well-formed call. `id` is assigned by the conversation, not by the model."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None

    def to_message(self) -> dict[str, Any]:
        """The dialogue-record form: {"id", "name", "arguments"}."""
        return {"id": self.id, "name": self.name, "arguments": dict(self.arguments)}


@dataclasses.dataclass(frozen=True)
class ToolCallParseError:
    """A call the model tried to make but got wrong; `reason` is meant to be shown to the model."""

    raw: str
    reason: str

    def to_tool_message(self) -> str:
        """Text for the tool message that tells the model what went wrong."""
        return f"Error: could not parse tool call ({self.reason}): {self.raw}"


@dataclasses.dataclass(frozen=True)
class ParsedAssistant:
    """An assistant turn as understood from its text."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    errors: tuple[ToolCallParseError, ...] = ()
    reasoning: str | None = None

    def to_message(self) -> dict[str, Any]:
        """The dialogue-record message (role "assistant"); reasoning kept as `reasoning_content`."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [c.to_message() for c in self.tool_calls]
        if self.reasoning is not None:
            msg["reasoning_content"] = self.reasoning
        return msg


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Split a leading ``<think>...</think>`` block: (reasoning or None, remaining content)."""
    m = _THINK_RE.match(text)
    if m is None:
        return None, text
    return m.group(1).strip("\n"), text[m.end() :].lstrip("\n")


def _call_from_object(
    obj: Any, raw: str, args_keys: tuple[str, ...]
) -> ToolCall | ToolCallParseError:
    """Validate one decoded JSON value as a call; every failure names the problem."""
    if not isinstance(obj, dict):
        return ToolCallParseError(raw, f"expected a JSON object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return ToolCallParseError(raw, "missing or empty 'name'")
    args: Any = {}
    for key in args_keys:
        if key in obj:
            args = obj[key]
            break
    if isinstance(args, str):  # some models double-encode the arguments
        problem = json_bounds_problem(args)
        if problem:
            return ToolCallParseError(raw, f"'{args_keys[0]}': {problem}")
        try:
            args = json.loads(args) if args.strip() else {}
        except (json.JSONDecodeError, RecursionError) as e:
            return ToolCallParseError(
                raw,
                f"'{args_keys[0]}' is a string that is not JSON: "
                f"{getattr(e, 'msg', type(e).__name__)}",
            )
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return ToolCallParseError(
            raw, f"'{args_keys[0]}' must be a JSON object, got {type(args).__name__}"
        )
    return ToolCall(name=name.strip(), arguments=args)


def _decode_json(raw: str, args_keys: tuple[str, ...]) -> ToolCall | ToolCallParseError:
    problem = json_bounds_problem(raw)
    if problem:
        return ToolCallParseError(raw[:1000], problem)
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as e:
        return ToolCallParseError(raw, f"invalid JSON: {e.msg} at position {e.pos}")
    except RecursionError:
        return ToolCallParseError(raw[:1000], f"JSON nested deeper than {MAX_CALL_DEPTH} levels")
    return _call_from_object(obj, raw, args_keys)


def parse_hermes(text: str) -> ParsedAssistant:
    """Parse Hermes/Qwen ``<tool_call>`` blocks; text outside them (stripped) is the content."""
    reasoning, rest = split_reasoning(text)
    content_parts: list[str] = []
    calls: list[ToolCall] = []
    errors: list[ToolCallParseError] = []
    pos = 0
    while True:
        start = rest.find(_HERMES_OPEN, pos)
        if start < 0:
            content_parts.append(rest[pos:])
            break
        content_parts.append(rest[pos:start])
        body_start = start + len(_HERMES_OPEN)
        end = rest.find(_HERMES_CLOSE, body_start)
        nested = rest.find(_HERMES_OPEN, body_start)
        if end < 0 or (0 <= nested < end):
            stop = len(rest) if nested < 0 else nested
            errors.append(
                ToolCallParseError(rest[start:stop].strip(), "unterminated <tool_call> block")
            )
            pos = stop
            if nested < 0:
                break
            continue
        result = _decode_json(rest[body_start:end].strip(), ("arguments", "parameters"))
        (calls if isinstance(result, ToolCall) else errors).append(result)
        pos = end + len(_HERMES_CLOSE)
    stray = "".join(content_parts)
    if _HERMES_CLOSE in stray:
        errors.append(
            ToolCallParseError(_HERMES_CLOSE, "</tool_call> without a matching <tool_call>")
        )
        stray = stray.replace(_HERMES_CLOSE, "")
    return ParsedAssistant(
        content=stray.strip(), tool_calls=tuple(calls), errors=tuple(errors), reasoning=reasoning
    )


def parse_llama3_json(text: str) -> ParsedAssistant:
    """Parse Llama 3.1 JSON tool calls: ``[<|python_tag|>]{...}[; {...}]`` or plain content."""
    reasoning, rest = split_reasoning(text)
    body = rest.strip()
    had_tag = body.startswith(_PYTHON_TAG)
    if had_tag:
        body = body[len(_PYTHON_TAG) :].lstrip()
    if not body.startswith("{"):
        if had_tag:
            err = ToolCallParseError(body, "<|python_tag|> not followed by a JSON object")
            return ParsedAssistant(content="", errors=(err,), reasoning=reasoning)
        return ParsedAssistant(content=body, reasoning=reasoning)
    problem = json_bounds_problem(body)
    if problem:
        err = ToolCallParseError(body[:1000], problem)
        return ParsedAssistant(content="", errors=(err,), reasoning=reasoning)
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    errors: list[ToolCallParseError] = []
    pos = 0
    while pos < len(body):
        try:
            obj, end = decoder.raw_decode(body, pos)
        except RecursionError:
            errors.append(ToolCallParseError(body[pos : pos + 1000], "JSON nested too deeply"))
            break
        except json.JSONDecodeError as e:
            errors.append(
                ToolCallParseError(body[pos:], f"invalid JSON: {e.msg} at position {e.pos - pos}")
            )
            break
        result = _call_from_object(obj, body[pos:end], ("parameters", "arguments"))
        (calls if isinstance(result, ToolCall) else errors).append(result)
        pos = end
        while pos < len(body) and (body[pos].isspace() or body[pos] == ";"):
            pos += 1
    return ParsedAssistant(
        content="", tool_calls=tuple(calls), errors=tuple(errors), reasoning=reasoning
    )


TOOL_PARSERS: dict[str, Callable[[str], ParsedAssistant]] = {
    "hermes": parse_hermes,
    "llama3_json": parse_llama3_json,
}


def get_tool_parser(name: str) -> Callable[[str], ParsedAssistant]:
    """Look a parser up by name; unknown names list the known ones."""
    try:
        return TOOL_PARSERS[name]
    except KeyError:
        raise ValueError(f"unknown tool parser {name!r}; known: {sorted(TOOL_PARSERS)}") from None
