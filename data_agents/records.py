"""The dialogue record contract: one synthesised instance, as journaled and as one TFDS example.

A record carries the task (tau2 format), the tools' JSON schemas, the policy, the messages
(`role`, `content`, `tool_calls` [{`id`, `name`, `arguments`}], `tool_call_id`), the checker, the
verdict and provenance. Rejected instances are records too (status "rejected", with the failure
reason and its attribution to the task or the trajectory), so nothing produced is ever lost.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

ROLES = ("system", "user", "assistant", "tool")
Status = Literal["accepted", "rejected"]


class RecordError(ValueError):
    """A record or message that violates the contract; the message names the field."""


def validate_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Normalise messages to the contract; raise RecordError naming the first bad field."""
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RecordError(f"messages[{i}] is {type(m).__name__}, expected an object")
        role = m.get("role")
        if role not in ROLES:
            raise RecordError(f"messages[{i}].role={role!r}; expected one of {ROLES}")
        msg: dict[str, Any] = {"role": role, "content": m.get("content") or ""}
        if not isinstance(msg["content"], str):
            raise RecordError(f"messages[{i}].content must be a string")
        calls = m.get("tool_calls") or []
        if calls and role not in ("assistant", "user"):  # users call tools in dual control
            raise RecordError(f"messages[{i}] has tool_calls but role is {role!r}")
        norm_calls = []
        for j, c in enumerate(calls):
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise RecordError(f"messages[{i}].tool_calls[{j}] needs a string 'name'")
            args = c.get("arguments", {})
            if not isinstance(args, dict):
                raise RecordError(f"messages[{i}].tool_calls[{j}].arguments must be an object")
            norm_calls.append(
                {"id": str(c.get("id") or f"call_{i}_{j}"), "name": c["name"], "arguments": args}
            )
        if norm_calls:
            msg["tool_calls"] = norm_calls
        if role == "tool":
            if not m.get("tool_call_id"):
                raise RecordError(f"messages[{i}] (tool) needs a tool_call_id")
            msg["tool_call_id"] = str(m["tool_call_id"])
        out.append(msg)
    return out


@dataclasses.dataclass
class DialogueRecord:
    key: str  # unique, stable: stream/round/index
    status: Status
    domain: str
    task: dict[str, Any]  # tau2-format task JSON
    tools: list[dict[str, Any]]  # OpenAI function schemas (agent side)
    policy: str
    messages: list[dict[str, Any]]
    verdict: dict[str, Any] | None = None  # Verdict.to_json()
    checker_source: str | None = None
    failure: dict[str, Any] | None = None  # {"stage", "reason", "attribution": task|trajectory}
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    split: str = "train"
    user_tools: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.status not in ("accepted", "rejected"):
            raise RecordError(f"status={self.status!r}; expected 'accepted' or 'rejected'")
        if not self.key:
            raise RecordError("record key is empty")
        if self.status == "rejected" and not self.failure:
            raise RecordError(f"rejected record {self.key!r} needs a failure reason")
        self.messages = validate_messages(self.messages)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DialogueRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise RecordError(f"unknown record fields: {sorted(unknown)}")
        return cls(**d)
