"""The environment contract: one episode's world, made by `Domain.make_env(task)`.

`call(name, arguments, requestor)` executes a tool call against a private copy of the database and
returns a `ToolResult`. Errors are results, never exceptions: an unknown tool, bad arguments or a
tool raising all come back with `error=True`, and the episode goes on. Every call is logged.
Error texts go back into the dialogue, so argument values echoed in them are cut short
(`bounded_error_text`): a 5 MB argument must not become a 5 MB tool message.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from typing import Any

from data_agents.domains.task import EnvAssertion, Requestor


def canonical_hash(data: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no whitespace): equal data, equal hash."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


ECHO_LIMIT = 200  # characters of one argument value an error text may echo
ERROR_LIMIT = 2000  # characters of a whole error text


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[truncated, {len(text)} chars]"


def _long_strings(value: Any) -> list[str]:
    """String leaves of an argument value (nested lists/dicts) too long to echo whole."""
    if isinstance(value, str):
        return [value] if len(value) > ECHO_LIMIT else []
    items = (
        value.values()
        if isinstance(value, dict)
        else value
        if isinstance(value, (list, tuple))
        else ()
    )
    return [s for v in items for s in _long_strings(v)]


def bounded_error_text(text: str, name: str, arguments: Any) -> str:
    """`text` with each long echoed argument value (and tool name) cut, then capped as a whole.

    Why: error texts are shown to the model and stored in transcripts; a hostile or runaway call
    must not multiply its own size there. Long values are cut where they occur (longest first, so a
    value containing another is replaced whole); whatever is still too long is capped at the end.
    """
    for value in sorted(set(_long_strings([name, arguments])), key=len, reverse=True):
        if value in text:
            text = text.replace(value, _shorten(value, ECHO_LIMIT))
    return _shorten(text, ERROR_LIMIT)


@dataclasses.dataclass(frozen=True)
class ToolResult:
    content: str
    error: bool = False


@dataclasses.dataclass(frozen=True)
class ToolCallRecord:
    requestor: Requestor
    name: str
    arguments: dict[str, Any]
    result: ToolResult


class Environment(abc.ABC):
    """One episode's world. Subclasses implement the five abstract methods."""

    def __init__(self) -> None:
        self.call_log: list[ToolCallRecord] = []

    @abc.abstractmethod
    def tools_schema(self, requestor: Requestor = "assistant") -> list[dict[str, Any]]:
        """OpenAI-style function schemas: [{"type": "function", "function": {...}}]."""

    @abc.abstractmethod
    def _execute(self, name: str, arguments: dict[str, Any], requestor: Requestor) -> ToolResult:
        """Run one call; may raise — `call` turns exceptions into error results."""

    @abc.abstractmethod
    def db_state(self, requestor: Requestor = "assistant") -> Any:
        """JSON-serialisable database (agent side, or the user's device DB)."""

    @abc.abstractmethod
    def run_assertion(self, assertion: EnvAssertion) -> bool:
        """Evaluate one env assertion (`func_name(**arguments) == assert_value`)."""

    def call(self, name: str, arguments: Any, requestor: Requestor = "assistant") -> ToolResult:
        if not isinstance(arguments, dict):
            result = ToolResult(
                f"Error: arguments for {name!r} must be a JSON object, got "
                f"{type(arguments).__name__}",
                error=True,
            )
        else:
            try:
                result = self._execute(name, arguments, requestor)
            except Exception as e:  # errors are results: the episode continues
                result = ToolResult(f"Error: {type(e).__name__}: {e}", error=True)
        if result.error:
            result = ToolResult(bounded_error_text(result.content, name, arguments), error=True)
        self.call_log.append(
            ToolCallRecord(
                requestor, name, dict(arguments) if isinstance(arguments, dict) else {}, result
            )
        )
        return result

    def db_hash(self, requestor: Requestor = "assistant") -> str:
        return canonical_hash(self.db_state(requestor))
