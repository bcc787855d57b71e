"""Token-in/token-out conversations: exact ids, an origin per token, turn boundaries.

A `Conversation` is append-only. The ids a sampler generated are stored as generated and never
re-tokenised; everything else (system/user/tool messages, the generation prompt, the template's
scaffolding) is rendered as a *delta* through the model's own chat template (see
`template.ChatTemplate`) and appended. So the ids an RL learner scores are exactly the ids the
sampler saw and produced.

Where the template is prefix-stable, the ids equal a full re-render of `messages` (tests check
this). Where it is not, they deliberately differ, and `Turn.prefix_stable` says so:
  * Qwen3 renders the last assistant turn with a (possibly empty) ``<think>`` block but drops it
    from earlier turns once a message follows; a rollout keeps what the model actually produced,
    so earlier turns keep their think blocks here and not in a full re-render.
  * Qwen-family templates merge consecutive tool results into one user turn; append all results of
    one assistant turn in a single `append_messages` call, or each becomes its own user turn.
The last assistant turn's closing scaffolding (``\\n`` after ``<|im_end|>``) is appended lazily,
together with whatever comes next, so a finished conversation ends on the end-of-turn token.

Masks: `assistant_mask` covers every token the policy produces (content, reasoning, tool-call JSON,
the end-of-turn token), not the generation prompt; `user_mask` covers user-message content.
Origins of rendered messages come from locating each content string in the rendered text; a BPE
token that straddles content and scaffolding (Qwen merges ``}\n`` at the end of a tool result)
counts as content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

import numpy as np

from eigen_jax.chat import messages as messages_lib
from eigen_jax.chat.template import ChatTemplate, TemplateError
from eigen_jax.chat.tool_parsers import ParsedAssistant


class Origin(enum.IntEnum):
    """Who a token comes from. TEMPLATE is scaffolding the chat template adds (role headers...)."""

    TEMPLATE = 0
    SYSTEM = 1
    USER = 2
    ASSISTANT = 3
    TOOL = 4


_ROLE_ORIGIN = {
    "system": Origin.SYSTEM,
    "user": Origin.USER,
    "tool": Origin.TOOL,
    "assistant": Origin.ASSISTANT,
}


class ConversationError(ValueError):
    """An operation the conversation's state does not allow; the text says why."""


@dataclasses.dataclass(frozen=True)
class Turn:
    """Tokens [start, end) of one message, scaffolding included.

    An assistant turn starts at its generation prompt and ends on its end-of-turn token.
    `generated` marks ids from a sampler; `prefix_stable` is False where the template would
    render this part differently in a full re-render (see the module docstring).
    """

    role: str
    message_index: int
    start: int
    end: int
    generated: bool = False
    prefix_stable: bool = True


class Conversation:
    """Append-only token sequence of one dialogue; build with `start` or `render_dialogue`."""

    def __init__(self, chat: ChatTemplate, tools: Sequence[Any] | None = None):
        self.chat = chat
        self.tools = messages_lib.validate_tools(tools)
        self._tokens: list[int] = []
        self._origins: list[int] = []
        self._messages: list[dict[str, Any]] = []
        self._turns: list[Turn] = []
        self._pending_closing = ""  # scaffolding after the last end-of-turn token, not yet added
        self._truncated = False  # last generated turn ended without a stop id
        self._prompt_cache: tuple[int, list[int], bool] | None = None

    @classmethod
    def start(
        cls, chat: ChatTemplate, messages: Sequence[Any], tools: Sequence[Any] | None = None
    ) -> Conversation:
        """A conversation holding `messages` (usually system + first user message)."""
        conv = cls(chat, tools)
        conv.append_messages(messages)
        return conv

    # ----------------------------------------------------------------- views
    @property
    def tokens(self) -> list[int]:
        return list(self._tokens)

    @property
    def origins(self) -> np.ndarray:
        """`Origin` value per token, int8."""
        return np.asarray(self._origins, dtype=np.int8)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Messages in dialogue-record shape (generated turns as parsed)."""
        return [messages_lib.to_record_message(m) for m in self._messages]

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end an assistant turn; give them to the sampler."""
        return self.chat.stop_ids

    @property
    def prefix_stable(self) -> bool:
        """True if the template was prefix-stable for every append.

        Then recorded turns equal a full re-render of `messages`; generated turns equal it only
        if the sampler's ids are the canonical tokenisation of what they parse to.
        """
        return all(t.prefix_stable for t in self._turns)

    def __len__(self) -> int:
        return len(self._tokens)

    def assistant_mask(self) -> np.ndarray:
        """True on tokens the policy produced, incl. tool-call JSON and end-of-turn tokens."""
        return self.origins == Origin.ASSISTANT

    def user_mask(self) -> np.ndarray:
        """True on user(-simulator) message content."""
        return self.origins == Origin.USER

    # ----------------------------------------------------------------- sampling
    def generation_prompt(self) -> list[int]:
        """All ids so far plus the ids that open the next assistant turn: the sampler's input."""
        return self._tokens + self._prompt_ids()[0]

    def append_generated(self, ids: Sequence[int]) -> ParsedAssistant:
        """Append a sampled assistant turn verbatim; return it parsed (tool calls get ids).

        `ids` are what the sampler produced after `generation_prompt()`, normally ending with a
        stop id. Without one (max tokens reached) the turn counts as cut off and nothing can be
        appended after it.
        Malformed tool calls are reported in `ParsedAssistant.errors`, never raised.
        """
        ids = self._check_ids(ids)
        with self._atomic():
            return self._append_generated(ids)

    def _append_generated(self, ids: list[int]) -> ParsedAssistant:
        prompt_ids, stable = self._prompt_ids()
        start = len(self._tokens)
        self._extend(prompt_ids, [Origin.TEMPLATE] * len(prompt_ids))
        self._extend(ids, [Origin.ASSISTANT] * len(ids))
        parsed = self.chat.parse(ids)
        index = len(self._messages)
        calls = tuple(
            dataclasses.replace(c, id=f"call_{index}_{k}") for k, c in enumerate(parsed.tool_calls)
        )
        parsed = dataclasses.replace(parsed, tool_calls=calls)
        self._messages.append(messages_lib.to_template_message(parsed.to_message(), index))
        self._turns.append(Turn("assistant", index, start, len(self._tokens), True, stable))
        self._pending_closing = ""
        self._truncated = not ids or ids[-1] not in self.chat.stop_ids
        if not self._truncated:
            self._pending_closing = self.chat.closing_after_assistant(self._messages, self.tools)
        return parsed

    # ----------------------------------------------------------------- messages
    def append_message(self, message: Any) -> None:
        """Append one message; see `append_messages`."""
        self.append_messages([message])

    def append_messages(self, messages: Sequence[Any]) -> None:
        """Append messages rendered through the template (assistant ones as if generated).

        Append all tool results of one assistant turn in one call: templates that merge
        consecutive tool messages then render them as a full re-render would.
        """
        self._check_open()
        new = messages_lib.to_template_messages(messages)
        with self._atomic():
            self._append_validated(new)

    def _append_validated(self, new: list[dict[str, Any]]) -> None:
        offset = len(self._messages)
        run: list[dict[str, Any]] = []
        for i, msg in enumerate(new):
            if msg["role"] != "assistant":
                run.append(msg)
                continue
            if run:
                self._append_run(run, offset + i - len(run))
                run = []
            self._append_recorded_assistant(msg, offset + i)
        if run:
            self._append_run(run, offset + len(new) - len(run))

    def _append_run(self, run: list[dict[str, Any]], first_index: int) -> None:
        """Non-assistant messages: one template delta, contents located to give origins."""
        delta = self.chat.messages_delta(self._messages, run, self.tools)
        text = self._pending_closing + delta.text
        spans = self._locate_contents(text, len(self._pending_closing), run, first_index)
        # a message's turn runs to the end-of-turn token after its content and the whitespace
        # after it (or to its content end when the template merges messages, e.g. tool results)
        eot = self.chat.end_of_turn_text
        bounds = []
        for j, (_, end, _) in enumerate(spans):
            limit = spans[j + 1][0] if j + 1 < len(spans) else len(text)
            k = text.find(eot, end, limit)
            if k < 0:
                bounds.append(end)
                continue
            k += len(eot)
            while k < limit and text[k].isspace():
                k += 1
            bounds.append(k)
        ids, offsets = self.chat.encode_with_offsets(text)
        origins = [Origin.TEMPLATE] * len(ids)
        turn_of = []
        for t, (s, e) in enumerate(offsets):
            for begin, end, origin in spans:
                if s < end and e > begin:
                    origins[t] = origin
            turn_of.append(next((j for j, b in enumerate(bounds) if s < b), len(run) - 1))
        start = len(self._tokens)
        self._extend(ids, origins)
        lo = start
        for j, msg in enumerate(run):
            hi = start + sum(1 for k in turn_of if k <= j)
            self._turns.append(
                Turn(msg["role"], first_index + j, lo, hi, False, delta.prefix_stable)
            )
            lo = hi
        self._messages.extend(run)
        self._pending_closing = ""
        self._prompt_cache = None

    @staticmethod
    def _locate_contents(
        text: str, cursor: int, run: list[dict[str, Any]], first_index: int
    ) -> list[tuple[int, int, Origin]]:
        """Character span and origin of each message's content, searched in order."""
        spans = []
        for j, msg in enumerate(run):
            content = msg["content"]
            begin = text.find(content, cursor) if content else cursor
            if content and begin < 0 and content.strip():
                content = content.strip()
                begin = text.find(content, cursor)
            if begin < 0:
                raise TemplateError(
                    f"message {first_index + j} ({msg['role']}): the template does "
                    "not render its content verbatim, cannot assign token origins"
                )
            cursor = begin + len(content)
            spans.append((begin, cursor, _ROLE_ORIGIN[msg["role"]]))
        return spans

    def _append_recorded_assistant(self, msg: dict[str, Any], index: int) -> None:
        """A recorded assistant message, tokenised as the model would have generated it."""
        prompt_ids, prompt_stable = self._prompt_ids()
        body, closing = self.chat.assistant_delta(self._messages, msg, self.tools)
        start = len(self._tokens)
        body_ids = self.chat.encode(body.text)
        self._extend(prompt_ids, [Origin.TEMPLATE] * len(prompt_ids))
        self._extend(body_ids, [Origin.ASSISTANT] * len(body_ids))
        self._messages.append(msg)
        self._turns.append(
            Turn(
                "assistant",
                index,
                start,
                len(self._tokens),
                False,
                prompt_stable and body.prefix_stable,
            )
        )
        self._pending_closing = closing
        self._prompt_cache = None

    # ----------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _atomic(self):
        """All-or-nothing appends: a template error leaves the conversation as it was."""
        state = (
            len(self._tokens),
            len(self._messages),
            len(self._turns),
            self._pending_closing,
            self._truncated,
        )
        try:
            yield
        except BaseException:
            n_tokens, n_messages, n_turns, self._pending_closing, self._truncated = state
            del self._tokens[n_tokens:], self._origins[n_tokens:]
            del self._messages[n_messages:], self._turns[n_turns:]
            self._prompt_cache = None
            raise

    def _prompt_ids(self) -> tuple[list[int], bool]:
        """Ids of pending closing + generation prompt, cached until the conversation changes."""
        self._check_open()
        if self._prompt_cache is None or self._prompt_cache[0] != len(self._tokens):
            delta = self.chat.generation_prompt(self._messages, self.tools)
            ids = self.chat.encode(self._pending_closing + delta.text)
            self._prompt_cache = (len(self._tokens), ids, delta.prefix_stable)
        return list(self._prompt_cache[1]), self._prompt_cache[2]

    def _check_open(self) -> None:
        if self._truncated:
            raise ConversationError(
                "the last assistant turn was cut off before a stop id "
                f"{self.chat.stop_ids}; nothing can follow it"
            )

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        if isinstance(ids, (str, bytes)):
            raise ConversationError("generated ids must be a sequence of ints, got text")
        arr = np.asarray(ids)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ConversationError(f"generated ids must be integers, got dtype {arr.dtype}")
        out = [int(i) for i in arr.reshape(-1)]
        vocab = len(self.chat.tokenizer)
        bad = [i for i in out if not 0 <= i < vocab]
        if bad:
            raise ConversationError(
                f"generated ids out of the tokenizer's range [0, {vocab}): {bad[:5]}"
            )
        return out

    def _extend(self, ids: Sequence[int], origins: Sequence[int]) -> None:
        self._tokens.extend(int(i) for i in ids)
        self._origins.extend(int(o) for o in origins)
        self._prompt_cache = None


def render_dialogue(
    chat: ChatTemplate, messages: Sequence[Any], tools: Sequence[Any] | None = None
) -> Conversation:
    """A recorded dialogue as the rollout would have produced it (the SFT pipeline's input).

    Agent-SFT trains on `assistant_mask()`; user-SFT renders the role-flipped dialogue and trains
    on that conversation's `assistant_mask()`.
    """
    return Conversation.start(chat, messages, tools)
