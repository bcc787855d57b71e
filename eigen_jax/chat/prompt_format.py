"""The prompt format a checkpoint was trained with, recorded beside its weights.

Why: an agent trained with the `compact` prompt (a one-line system prompt, no tool listing; see
`views.agent_prompt`) and served with tau2's full policy and 14 tool schemas is sampled far off
its training distribution, and a server that did not know the tool-call syntax would return its
tool calls as text. Training writes `prompt_format.json` into every exported checkpoint; the
server reads it and renders requests as the model was trained (`render_messages`), and parses
tool calls with the recorded syntax.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gin

from eigen_jax.chat import views

FILE = "prompt_format.json"
MODES = ("full", "compact")


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """agent_prompt: `views.agent_prompt` mode; compact_system: the system prompt of `compact`;
    tool_parser: the tool-call syntax (`tool_parsers.TOOL_PARSERS` name)."""

    agent_prompt: str = "full"
    compact_system: str = views.COMPACT_SYSTEM
    tool_parser: str = "hermes"

    def __post_init__(self):
        if self.agent_prompt not in MODES:
            raise ValueError(
                f"{FILE}: agent_prompt must be one of {MODES}, got {self.agent_prompt!r}"
            )

    def render_messages(
        self, messages: Sequence[dict[str, Any]], tools: Any
    ) -> tuple[list[dict[str, Any]], Any]:
        """(messages, tools) as the model saw them in training: `compact` swaps the system
        message for the compact one and lists no tools; `full` keeps both as sent."""
        if self.agent_prompt == "full":
            return list(messages), tools
        body = [m for m in messages if m.get("role") != "system"]
        return [{"role": "system", "content": self.compact_system}] + body, None


def current(tool_parser: str = "hermes") -> PromptFormat:
    """The format the running process trains with: `agent_prompt`'s gin bindings."""
    bound = gin.get_bindings("agent_prompt")
    return PromptFormat(
        bound.get("mode", "full"), bound.get("compact_system", views.COMPACT_SYSTEM), tool_parser
    )


def write(hf_dir: str | Path, fmt: PromptFormat) -> None:
    Path(hf_dir, FILE).write_text(json.dumps(dataclasses.asdict(fmt), indent=1))


def read(hf_dir: str | Path) -> PromptFormat | None:
    """The recorded format, or None for a checkpoint without one (e.g. a downloaded HF model)."""
    path = Path(hf_dir, FILE)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return PromptFormat(**data)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: not a prompt format ({err})") from err
