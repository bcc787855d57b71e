"""Dialogue-record messages <-> the message dicts HF chat templates expect.

The dialogue record stores tool calls flat (``{"id", "name", "arguments"}``); HF templates follow
the OpenAI shape (``{"id", "type": "function", "function": {"name", "arguments"}}``). Both shapes
are accepted on input, validated once here, and converted to the OpenAI shape for rendering, so
templates of every family see what their authors tested against. Bad input raises
`MessageError` naming the offending message and field.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


class MessageError(ValueError):
    """A message that cannot be rendered; the text names the message index and field."""


def _normalise_call(call: Any, where: str) -> dict[str, Any]:
    if not isinstance(call, Mapping):
        raise MessageError(f"{where} is {type(call).__name__}, expected an object")
    fn = call.get("function", call)
    if not isinstance(fn, Mapping):
        raise MessageError(f"{where}.function must be an object")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise MessageError(f"{where} needs a non-empty string 'name'")
    args = fn.get("arguments", {})
    if args is None:
        args = {}
    if not isinstance(args, (Mapping, str)):
        raise MessageError(f"{where}.arguments must be an object (or a JSON string)")
    out: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": name,
            "arguments": copy.deepcopy(dict(args)) if isinstance(args, Mapping) else args,
        },
    }
    if call.get("id") is not None:
        out["id"] = str(call["id"])
    return out


def to_template_message(message: Any, index: int = 0) -> dict[str, Any]:
    """Validate one message and return it in the shape HF chat templates render."""
    if not isinstance(message, Mapping):
        raise MessageError(f"messages[{index}] is {type(message).__name__}, expected an object")
    role = message.get("role")
    if role not in ROLES:
        raise MessageError(f"messages[{index}].role={role!r}; expected one of {ROLES}")
    content = message.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise MessageError(
            f"messages[{index}].content must be a string, got {type(content).__name__}"
        )
    out: dict[str, Any] = {"role": role, "content": content}
    calls = message.get("tool_calls") or []
    if calls and role != "assistant":
        raise MessageError(f"messages[{index}] has tool_calls but role is {role!r}")
    if calls:
        out["tool_calls"] = [
            _normalise_call(c, f"messages[{index}].tool_calls[{j}]") for j, c in enumerate(calls)
        ]
    reasoning = message.get("reasoning_content")
    if reasoning is not None:
        if role != "assistant" or not isinstance(reasoning, str):
            raise MessageError(
                f"messages[{index}].reasoning_content must be a string on an assistant"
            )
        out["reasoning_content"] = reasoning
    if role == "tool":
        if message.get("tool_call_id") is not None:
            out["tool_call_id"] = str(message["tool_call_id"])
        if message.get("name") is not None:
            out["name"] = str(message["name"])
    return out


def to_template_messages(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """Validate a whole list (a str or a dict is rejected, not iterated)."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise MessageError(f"messages must be a list of objects, got {type(messages).__name__}")
    return [to_template_message(m, i) for i, m in enumerate(messages)]


def validate_tools(tools: Any) -> list[dict[str, Any]] | None:
    """Tools are JSON schemas (OpenAI function format); None or [] means no tools."""
    if tools is None:
        return None
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise MessageError(f"tools must be a list of JSON schemas, got {type(tools).__name__}")
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise MessageError(
                f"tools[{i}] is {type(tool).__name__}, expected a JSON schema object"
            )
        fn = tool.get("function", tool)
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            raise MessageError(f"tools[{i}] needs a string 'name' (or function.name)")
    return [dict(t) for t in tools] or None


def to_record_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """Template-shaped message -> dialogue-record shape (flat tool calls)."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content") or ""}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": c.get("id"),
                "name": c["function"]["name"],
                "arguments": c["function"]["arguments"],
            }
            for c in message["tool_calls"]
        ]
    for key in ("tool_call_id", "name", "reasoning_content"):
        if message.get(key) is not None:
            out[key] = message[key]
    return out
