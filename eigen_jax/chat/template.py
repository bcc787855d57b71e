"""`ChatTemplate`: a model's own HF tokenizer + Jinja chat template, and the deltas we need from it.

Why deltas: a token-in/token-out conversation never re-renders what is already there (generated
ids must never be re-tokenised, and some templates rewrite earlier turns). It asks the template
for three kinds of text only:

  * the generation prompt that opens an assistant turn (``<|im_start|>assistant\\n``),
  * what an assistant message contributes after that prompt, split into the part the model
    generates (content, ``<tool_call>`` JSON, the end-of-turn token) and the closing scaffolding
    the template puts after the end-of-turn token (``\\n``),
  * what appending system/user/tool messages contributes.

Each delta is ``render(history + new)`` minus ``render(history)`` when the second is a prefix of
the first (the template is *prefix-stable* there). When it is not (Qwen3 re-renders the previous
assistant turn without its think block once another message follows), the delta is taken against
a neutral one-message history instead, which yields the tokens a rollout would really append;
`Delta.prefix_stable` records which case applied.

The template is the model's own; nothing here hand-writes a template for a real model family.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from eigen_jax.chat import messages as messages_lib
from eigen_jax.chat import tool_parsers

_PROBE_TEXT = "EIGEN_JAX_PROBE"
_NEUTRAL_HISTORY = ({"role": "user", "content": "."},)
# Deltas render the same history several times (prompt, closing, next delta): an LRU of renders
# makes building a dialogue cost a few renders per message instead of a dozen.
_RENDER_CACHE_SIZE = 32


class TemplateError(ValueError):
    """The tokenizer's chat template cannot give what the chat layer needs; the text says what."""


@dataclasses.dataclass(frozen=True)
class Delta:
    """Text a template adds for new messages; `prefix_stable` is False when taken the neutral way."""

    text: str
    prefix_stable: bool


class ChatTemplate:
    """Renders messages with the tokenizer's own template and parses assistant output.

    Args:
      tokenizer: a fast HF tokenizer (offsets are needed to give every token an origin) that has a
        chat template.
      tool_parser: name in `tool_parsers.TOOL_PARSERS` matching the family's tool-call format.
      template_kwargs: extra variables for the template (e.g. ``{"enable_thinking": False}``).
      extra_stop_ids: further ids that end an assistant turn (e.g. from generation_config.json).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        tool_parser: str = "hermes",
        template_kwargs: dict[str, Any] | None = None,
        extra_stop_ids: Sequence[int] = (),
    ):
        if not getattr(tokenizer, "chat_template", None):
            raise TemplateError(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template"
            )
        if not getattr(tokenizer, "is_fast", False):
            raise TemplateError(
                "a fast (Rust `tokenizers`) tokenizer is required for token offsets"
            )
        self.tokenizer = tokenizer
        self.tool_parser = tool_parser
        self._parse_text = tool_parsers.get_tool_parser(tool_parser)
        self.template_kwargs = dict(template_kwargs or {})
        self._render_cache: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._special_ids = frozenset(int(i) for i in tokenizer.all_special_ids)
        self.end_of_turn_id, self.end_of_turn_text = self._find_end_of_turn()
        stops = [self.end_of_turn_id]
        if tokenizer.eos_token_id is not None:
            stops.append(int(tokenizer.eos_token_id))
        stops.extend(int(i) for i in extra_stop_ids)
        self.stop_ids: tuple[int, ...] = tuple(dict.fromkeys(stops))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> ChatTemplate:
        """Load the tokenizer from an HF dir (local or a URL); eos ids of its generation_config.json stop too."""
        from transformers import AutoTokenizer  # imported lazily: heavy, and only needed here

        from eigen_jax import paths

        if paths.is_url(path):  # a run folder in a bucket: read a local copy
            path = paths.local_dir(path, "tokenizer")
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"tokenizer directory {path!r} does not exist")
        tokenizer = AutoTokenizer.from_pretrained(path)
        gen_cfg = os.path.join(path, "generation_config.json")
        if os.path.exists(gen_cfg) and "extra_stop_ids" not in kwargs:
            with open(gen_cfg) as f:
                eos = json.load(f).get("eos_token_id")
            kwargs["extra_stop_ids"] = [eos] if isinstance(eos, int) else list(eos or [])
        return cls(tokenizer, **kwargs)

    # ----------------------------------------------------------------- rendering
    def render_text(
        self,
        messages: Sequence[Any],
        tools: Sequence[Any] | None = None,
        add_generation_prompt: bool = False,
    ) -> str:
        """Full render of `messages` as text (the reference the deltas are checked against)."""
        msgs = messages_lib.to_template_messages(messages)
        if not msgs:
            return ""
        key = json.dumps([msgs, tools, add_generation_prompt], sort_keys=True, default=repr)
        with self._cache_lock:  # rollouts share one ChatTemplate across threads
            text = self._render_cache.get(key)
            if text is not None:
                self._render_cache.move_to_end(key)
                return text
        text = self.tokenizer.apply_chat_template(
            msgs,
            tools=messages_lib.validate_tools(tools),
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **self.template_kwargs,
        )
        with self._cache_lock:
            self._render_cache[key] = text
            if len(self._render_cache) > _RENDER_CACHE_SIZE:
                self._render_cache.popitem(last=False)
        return text

    def render(
        self,
        messages: Sequence[Any],
        tools: Sequence[Any] | None = None,
        add_generation_prompt: bool = False,
    ) -> list[int]:
        """Full render of `messages` as ids."""
        return self.encode(self.render_text(messages, tools, add_generation_prompt))

    def encode(self, text: str) -> list[int]:
        """Text -> ids; special tokens written in the text are recognised, none are added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and each token's (start, end) character span in `text`."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text with every special token kept (the parsers need them)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def is_special(self, token_id: int) -> bool:
        return int(token_id) in self._special_ids

    # ----------------------------------------------------------------- deltas
    def _delta(
        self,
        history: Sequence[Any],
        new: Sequence[Any],
        tools: Sequence[Any] | None,
        history_gen_prompt: bool,
        new_gen_prompt: bool,
    ) -> Delta:
        for base, stable in ((list(history), True), (list(_NEUTRAL_HISTORY), False)):
            prev = self.render_text(base, tools, history_gen_prompt) if base else ""
            full = self.render_text(base + list(new), tools, new_gen_prompt)
            if full.startswith(prev):
                return Delta(full[len(prev) :], stable)
        roles = [m.get("role") if isinstance(m, dict) else "?" for m in new]
        raise TemplateError(
            f"the chat template is not prefix-stable when appending roles {roles}, "
            "even after a neutral history; it cannot be rendered incrementally"
        )

    def generation_prompt(
        self, history: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> Delta:
        """Text that opens the next assistant turn after `history`."""
        return self._delta(history, [], tools, False, True)

    def messages_delta(
        self, history: Sequence[Any], new: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> Delta:
        """Text that appending non-assistant `new` messages adds after `history` (and its closing)."""
        return self._delta(history, new, tools, False, False)

    def assistant_delta(
        self, history: Sequence[Any], message: Any, tools: Sequence[Any] | None = None
    ) -> tuple[Delta, str]:
        """(generated part incl. end-of-turn text, closing scaffolding) for an assistant message."""
        delta = self._delta(history, [message], tools, True, False)
        end = delta.text.rfind(self.end_of_turn_text)
        if end < 0:
            raise TemplateError(
                f"assistant turn rendered without the end-of-turn token "
                f"{self.end_of_turn_text!r}: {delta.text!r}"
            )
        end += len(self.end_of_turn_text)
        return Delta(delta.text[:end], delta.prefix_stable), delta.text[end:]

    def closing_after_assistant(
        self, history: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> str:
        """Scaffolding the template puts after the end-of-turn token of `history`'s last turn."""
        text = self.render_text(history, tools)
        end = text.rfind(self.end_of_turn_text)
        if end < 0:
            raise TemplateError("history does not end with an assistant turn")
        return text[end + len(self.end_of_turn_text) :]

    def _find_end_of_turn(self) -> tuple[int, str]:
        """The special token the template closes an assistant turn with (<|im_end|>, <|eot_id|>)."""
        history = [{"role": "user", "content": "Hi"}]
        delta = self._delta(
            history, [{"role": "assistant", "content": _PROBE_TEXT}], None, True, False
        )
        at = delta.text.rfind(_PROBE_TEXT)
        if at < 0:
            raise TemplateError("the chat template does not render assistant content verbatim")
        tail = delta.text[at + len(_PROBE_TEXT) :]
        ids, offsets = self.encode_with_offsets(tail)
        for token_id, (start, end) in zip(ids, offsets):
            if self.is_special(token_id):
                return int(token_id), tail[start:end]
        raise TemplateError(f"no special end-of-turn token after assistant content: {tail!r}")

    # ----------------------------------------------------------------- parsing
    def parse(self, ids: Sequence[int]) -> tool_parsers.ParsedAssistant:
        """Generated ids of one assistant turn -> content, reasoning, tool calls, parse errors."""
        ids = list(ids)
        while ids and ids[-1] in self.stop_ids:
            ids.pop()
        return self._parse_text(self.decode(ids))

    def parse_text(self, text: str) -> tool_parsers.ParsedAssistant:
        """Like `parse`, for text already decoded (end-of-turn text is stripped)."""
        text = text.removesuffix(self.end_of_turn_text)
        return self._parse_text(text)
