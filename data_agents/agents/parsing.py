"""Defensive parsing of LLM output: text → JSON → a validated pydantic object, or a `StageFailure`.

Why: models wrap JSON in prose or code fences, truncate it at `max_tokens`, emit tool-call
arguments that are not JSON, or answer with the right JSON of the wrong shape. None of that may
crash a run: every problem becomes a `StageFailure` whose `category` feeds the failure taxonomy
and whose `reason` names what was wrong, and the instance is journaled as rejected.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Literal, TypeVar

import pydantic

from data_agents.dialogue import Call

Attribution = Literal["task", "trajectory"]
M = TypeVar("M", bound=pydantic.BaseModel)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
MAX_EXCERPT = 400
# Checked before any json call: the C decoder recurses per nesting level (deep input raises
# RecursionError, not ValueError), and `extract_json` retries from every bracket (quadratic).
MAX_JSON_CHARS = 1_000_000
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def check_json_bounds(
    text: str, max_chars: int = MAX_JSON_CHARS, max_depth: int = MAX_JSON_DEPTH
) -> None:
    """Raise ValueError if `text` is longer than `max_chars` or nests brackets (outside string
    literals) deeper than `max_depth`. Conservative: an unterminated string's brackets count."""
    if len(text) > max_chars:
        raise ValueError(
            f"output too large to parse as JSON: {len(text)} characters (limit {max_chars})"
        )
    depth = deepest = 0
    for ch in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth = depth + 1 if ch in "[{" else max(0, depth - 1)
        if depth > deepest:
            deepest = depth
            if deepest > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")


def bounded_loads(text: str) -> Any:
    """`json.loads` behind `check_json_bounds`; every failure is a ValueError."""
    check_json_bounds(text)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None


@dataclasses.dataclass
class StageFailure(Exception):
    """Why an instance was rejected: stage, taxonomy category, reason, and who is at fault."""

    stage: str
    category: str
    reason: str
    attribution: Attribution = "task"
    raw: str | None = None  # an excerpt of the offending output, for debugging

    def __str__(self) -> str:
        return f"{self.stage}/{self.category}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        out = {
            "stage": self.stage,
            "category": self.category,
            "reason": self.reason,
            "attribution": self.attribution,
        }
        if self.raw is not None:
            out["raw"] = self.raw[:MAX_EXCERPT]
        return out


def extract_json(text: str | None) -> Any:
    """The first JSON object or array in `text` (fences, `<think>` blocks and prose tolerated).

    Raises ValueError naming the problem: empty output, no JSON at all, or JSON that does not
    parse (with the decoder's message, e.g. a truncated object).
    """
    if text is None or not text.strip():
        raise ValueError("empty output")
    check_json_bounds(text)
    text = _THINK.sub("", text)
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    last_error = None
    for chunk in candidates:
        for i, ch in enumerate(chunk):
            if ch not in "{[":
                continue
            try:
                value, _ = decoder.raw_decode(chunk, i)
                return value
            except json.JSONDecodeError as e:
                last_error = last_error or e
            except RecursionError:
                raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    if last_error is None:
        raise ValueError("no JSON object in the output")
    raise ValueError(f"invalid JSON: {last_error.msg} at char {last_error.pos}")


def parse_model(
    text: str | None, model: type[M], *, stage: str, attribution: Attribution = "task"
) -> M:
    """Parse `text` as `model`; problems raise StageFailure (`invalid_json` or `schema`)."""
    try:
        data = extract_json(text)
    except ValueError as e:
        raise StageFailure(stage, "invalid_json", str(e), attribution, text) from None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as e:
        raise StageFailure(stage, "schema", schema_errors(e), attribution, text) from None


def schema_errors(err: pydantic.ValidationError, limit: int = 4) -> str:
    """`field.path: message; ...` for the first `limit` problems."""
    parts = []
    for e in err.errors()[:limit]:
        where = ".".join(str(x) for x in e["loc"]) or "<root>"
        parts.append(f"{where}: {e['msg']}")
    more = len(err.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


ParsedCall = Call  # the protocol's tool call (data_agents.dialogue)


def parse_tool_calls(message: Any, prefix: str = "call") -> list[ParsedCall]:
    """Tool calls of an OpenAI `ChatCompletionMessage`, arguments decoded defensively.

    Arguments that are not a JSON object keep the call (the model did try to act) with empty
    arguments and an `error`, which the caller returns to the model as the tool's result.
    """
    out = []
    for i, call in enumerate(getattr(message, "tool_calls", None) or []):
        fn = getattr(call, "function", None)
        name = getattr(fn, "name", None)
        if not isinstance(name, str) or not name:
            continue  # nothing to execute or record
        raw = getattr(fn, "arguments", None)
        args, error = {}, None
        if isinstance(raw, dict):
            args = raw
        elif raw is None or (isinstance(raw, str) and not raw.strip()):
            args = {}
        else:
            try:
                value = bounded_loads(raw)
            except (TypeError, ValueError) as e:
                value, error = None, f"Error: arguments of {name} are not valid JSON ({e})"
            if isinstance(value, dict):
                args = value
            elif error is None:
                error = (
                    f"Error: arguments of {name} must be a JSON object, got {type(value).__name__}"
                )
        out.append(ParsedCall(str(getattr(call, "id", None) or f"{prefix}_{i}"), name, args, error))
    return out


def first_message(completion: Any, stage: str, attribution: Attribution = "task") -> Any:
    """The first choice's message; a completion with no choices is a StageFailure."""
    choices = getattr(completion, "choices", None) or []
    if not choices or getattr(choices[0], "message", None) is None:
        raise StageFailure(stage, "empty_completion", "the model returned no choices", attribution)
    return choices[0].message
