"""The environment contract: one episode's world, made by `Domain.make_env(task)`.

`call(name, arguments, requestor)` executes a tool call against a private copy of the database and
returns a `ToolResult`. Errors are results, never exceptions: an unknown tool, bad arguments or a
tool raising all come back with `error=True`, and the episode goes on. Every call is logged.
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
            result = ToolResult(f"Error: arguments for {name!r} must be a JSON object, got "
                                f"{type(arguments).__name__}", error=True)
        else:
            try:
                result = self._execute(name, arguments, requestor)
            except Exception as e:  # errors are results: the episode continues
                result = ToolResult(f"Error: {type(e).__name__}: {e}", error=True)
        self.call_log.append(ToolCallRecord(requestor, name, dict(arguments) if isinstance(
            arguments, dict) else {}, result))
        return result

    def db_hash(self, requestor: Requestor = "assistant") -> str:
        return canonical_hash(self.db_state(requestor))
