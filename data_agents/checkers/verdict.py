"""The verdict contract: a checker's output. reward ∈ {0, 1}; an error never counts as a pass."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

Status = Literal["pass", "fail", "error"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: Status
    components: dict[str, float] = dataclasses.field(default_factory=dict)  # per reward basis
    reason: str | None = None  # why it failed or errored

    @property
    def reward(self) -> float:
        return 1.0 if self.status == "pass" else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reward": self.reward,
            "components": self.components,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Verdict:
        return cls(d["status"], dict(d.get("components") or {}), d.get("reason"))
