"""The outfitter domain's REFERENCE SOLVER, user side: a programmatic user simulator.

Used for the offline quickstart and tests (the LLM user simulator lives elsewhere). It follows the
structured script the task generator stored in `task.description["user_script"]` and must behave
sensibly with ANY assistant, a half-trained model included: it answers identity questions, states
one request at a time, answers confirmations per its instructions, moves on when the assistant
closes a request ("anything else?"), and ends with ###STOP### when done, transferred, or stuck
(repeated assistant messages, a request restated too often, or a turn budget spent).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from data_agents.domains.outfitter import texts
from data_agents.domains.task import Task

RE_CONFIRM = re.compile(r"yes/no|\bconfirm\b|shall i proceed|should i proceed", re.IGNORECASE)
RE_IDENTITY = re.compile(r"\bemail\b|\bzip\b|\bverify\b|\bidentity\b", re.IGNORECASE)
RE_CLOSED = re.compile(r"anything else", re.IGNORECASE)
RE_TRANSFER = re.compile(r"\btransferr?(ed|ing)?\b.*\bhuman\b", re.IGNORECASE)
MAX_RESTATE = 3


class ReferenceUser:
    """Scripted user for one task; stateless between calls (everything is read from messages)."""

    def __init__(self, task: Task, max_turns: int | None = None) -> None:
        script = (task.description or {}).get("user_script")
        if not script or not script.get("requests"):
            raise ValueError(
                f"task {task.id!r} has no outfitter user_script in its description; "
                "the reference user only plays generated outfitter tasks"
            )
        self.task_id = task.id
        self.script = script
        self.requests: list[dict[str, Any]] = script["requests"]
        self.max_turns = max_turns or 4 + 3 * len(self.requests)

    def first_message(self) -> str:
        return f"{self.script['opening']} {self.requests[0]['text']}".strip()

    def respond(self, messages: list[dict[str, Any]]) -> str:
        mine = [m.get("content") or "" for m in messages if m["role"] == "user"]
        said = [
            (m.get("content") or "")
            for m in messages
            if m["role"] == "assistant" and (m.get("content") or "").strip()
        ]
        if not mine:
            return self.first_message()
        if not said or len(mine) >= self.max_turns:
            return texts.STOP
        last = said[-1]
        if len(said) >= 3 and said[-1] == said[-2] == said[-3]:
            return texts.STOP  # the assistant is looping
        current = max(
            i for i, r in enumerate(self.requests) if i == 0 or any(r["text"] in m for m in mine)
        )
        if RE_TRANSFER.search(last):
            return texts.STOP
        if RE_CONFIRM.search(last):
            options = texts.CONFIRM_YES if self.requests[current]["confirm"] else texts.CONFIRM_NO
            return self._choose(options, len(mine))
        if RE_CLOSED.search(last):
            if current + 1 < len(self.requests):
                return self.requests[current + 1]["text"]
            return texts.THANKS_STOP
        if RE_IDENTITY.search(last):
            return self.script["identity_text"]
        # Anything else: restate the current request, a bounded number of times.
        request = self.requests[current]["text"]
        if sum(request in m for m in mine) >= MAX_RESTATE:
            return texts.STOP
        return f"Sorry, let me repeat: {request}"

    def _choose(self, options: list[str], turn: int) -> str:
        """A deterministic pick, varied by task and turn, so replays are reproducible."""
        h = hashlib.sha256(f"{self.task_id}/{turn}".encode()).digest()
        return options[h[0] % len(options)]
