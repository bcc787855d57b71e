"""Conversation: masks vs independent reconstructions, incremental == full render where stable."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eigen_jax.chat.conversation import Conversation, ConversationError, Origin, render_dialogue

from . import dialogues

QWEN_EMPTY_THINK = "<think>\n\n</think>\n\n"


def _spans(mask):
    """[start, end) runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _assistants(msgs):
    return [m for m in msgs if m["role"] == "assistant"]


def test_qwen3_assistant_mask_round_trips_the_dialogue(qwen3_chat):
    msgs = dialogues.dialogue()
    conv = render_dialogue(qwen3_chat, msgs, dialogues.TOOLS)
    tokens, mask = np.asarray(conv.tokens), conv.assistant_mask()
    spans = _spans(mask)
    assert len(spans) == len(_assistants(msgs))
    for (s, e), msg in zip(spans, _assistants(msgs)):
        # independent reconstruction: Qwen3 turn = empty think block + Hermes body + <|im_end|>
        assert (
            qwen3_chat.decode(tokens[s:e])
            == QWEN_EMPTY_THINK + dialogues.hermes_text(msg) + "<|im_end|>"
        )
        assert tokens[e - 1] == qwen3_chat.end_of_turn_id
        assert (
            qwen3_chat.decode(tokens[s - 3 : s]) == "<|im_start|>assistant\n"
        )  # prompt is not masked
        parsed = qwen3_chat.parse(tokens[s:e])
        assert parsed.content == msg["content"] and parsed.errors == ()
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == [
            (c["name"], c["arguments"]) for c in msg.get("tool_calls", [])
        ]
    # the turn table agrees with the mask
    for turn in conv.turns:
        assert mask[turn.start : turn.end].any() == (turn.role == "assistant")
    assert conv.messages == msgs


def test_qwen3_user_and_tool_origins(qwen3_chat):
    msgs = dialogues.dialogue()
    conv = render_dialogue(qwen3_chat, msgs, dialogues.TOOLS)
    tokens, origins = np.asarray(conv.tokens), conv.origins
    for origin, role in ((Origin.USER, "user"), (Origin.TOOL, "tool"), (Origin.SYSTEM, "system")):
        got = [qwen3_chat.decode(tokens[s:e]) for s, e in _spans(origins == origin)]
        want = [m["content"] for m in msgs if m["role"] == role]
        assert len(got) == len(want)
        for g, w in zip(got, want):  # a BPE token straddling content and scaffolding ("}\n")
            assert w in g and g.strip() == w  # counts as content: only whitespace may be added
    assert np.array_equal(conv.user_mask(), origins == Origin.USER)
    # everything else is scaffolding; the tools' JSON schemas are in it
    assert '"name": "update_address"' in qwen3_chat.decode(tokens[origins == Origin.TEMPLATE])


def test_qwen3_incremental_equals_full_render_where_prefix_stable(qwen3_chat):
    """One agent turn after the prompt: the layout the authors train and sample in."""
    msgs = dialogues.dialogue()[:3]
    conv = render_dialogue(qwen3_chat, msgs, dialogues.TOOLS)
    full = qwen3_chat.render(msgs, dialogues.TOOLS)
    assert conv.prefix_stable
    assert conv.tokens == full[:-1] and qwen3_chat.decode(full[-1:]) == "\n"  # lazy closing


def test_qwen3_is_not_prefix_stable_across_turns(qwen3_chat):
    """Qwen3 drops the think block of earlier assistant turns in a full re-render; we keep it."""
    msgs = dialogues.dialogue()
    conv = render_dialogue(qwen3_chat, msgs, dialogues.TOOLS)
    ours = qwen3_chat.decode(conv.tokens)
    full = qwen3_chat.render_text(msgs, dialogues.TOOLS)
    n_assistant = len(_assistants(msgs))
    assert not conv.prefix_stable
    assert ours.count(QWEN_EMPTY_THINK) == n_assistant and full.count(QWEN_EMPTY_THINK) == 1
    assert ours.replace(QWEN_EMPTY_THINK, "") + "\n" == full.replace(QWEN_EMPTY_THINK, "")
    unstable = {t.role for t in conv.turns if not t.prefix_stable}
    assert unstable == {"tool", "user"}  # messages appended right after an assistant turn


def test_qwen3_rollout_keeps_generated_ids_verbatim(qwen3_chat):
    chat = qwen3_chat
    conv = Conversation.start(chat, dialogues.dialogue()[:2], dialogues.TOOLS)
    prompt = conv.generation_prompt()
    assert prompt == chat.render(
        dialogues.dialogue()[:2], dialogues.TOOLS, add_generation_prompt=True
    )
    text = QWEN_EMPTY_THINK + dialogues.hermes_text(dialogues.DIALOGUE[2])
    # a non-canonical tokenisation (one token per character run) must be stored as sampled
    generated = [i for piece in text.split(" ") for i in chat.encode(piece + " ")][:-1]
    generated += [chat.end_of_turn_id]
    assert generated[:-1] != chat.encode(text)
    parsed = conv.append_generated(generated)
    assert conv.tokens == prompt + generated
    assert conv.assistant_mask().sum() == len(generated)
    assert [c.id for c in parsed.tool_calls] == ["call_2_0", "call_2_1"]
    results = [
        {"role": "tool", "tool_call_id": c.id, "content": f"result {k}"}
        for k, c in enumerate(parsed.tool_calls)
    ]
    conv.append_messages(results)
    tail = chat.decode(conv.tokens[len(prompt) + len(generated) :])
    assert tail == (
        "\n<|im_start|>user\n<tool_response>\nresult 0\n</tool_response>\n"
        "<tool_response>\nresult 1\n</tool_response><|im_end|>\n"
    )
    assert chat.decode(conv.generation_prompt()[len(conv) :]) == "<|im_start|>assistant\n"
    # a malformed call is a parse error value, and the rollout can report it back
    bad = chat.encode("<tool_call>\n{\"name\": \"update_address\", \"arguments\": {\n</tool_call>")
    parsed = conv.append_generated(bad + [chat.end_of_turn_id])
    assert parsed.tool_calls == () and "invalid JSON" in parsed.errors[0].reason
    conv.append_message({"role": "user", "content": parsed.errors[0].to_tool_message()})
    assert [m["role"] for m in conv.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "user",
    ]


def _tiny_rollout(chat, msgs):
    """Replay `msgs` as a rollout: assistant turns arrive as sampled ids."""
    first = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    conv = Conversation.start(chat, msgs[:first], dialogues.TOOLS)
    i = first
    while i < len(msgs):
        if msgs[i]["role"] == "assistant":
            conv.generation_prompt()
            conv.append_generated(
                chat.encode(dialogues.hermes_text(msgs[i])) + [chat.end_of_turn_id]
            )
            i += 1
        else:
            j = i
            while j < len(msgs) and msgs[j]["role"] != "assistant":
                j += 1
            conv.append_messages(msgs[i:j])
            i = j
    return conv


def test_tiny_incremental_equals_full_render(tiny_chat):
    msgs = dialogues.dialogue()
    full = tiny_chat.render(msgs, dialogues.TOOLS)
    recorded = render_dialogue(tiny_chat, msgs, dialogues.TOOLS)
    rollout = _tiny_rollout(tiny_chat, msgs)
    assert recorded.prefix_stable and rollout.prefix_stable
    assert recorded.tokens == full[:-1] and rollout.tokens == full[:-1]
    assert np.array_equal(recorded.origins, rollout.origins)
    # independent mask reconstruction: assistant bodies located in the full render's text
    spans = _spans(rollout.assistant_mask())
    for (s, e), msg in zip(spans, _assistants(msgs)):
        assert tiny_chat.decode(full[s:e]) == dialogues.hermes_text(msg) + "<|im_end|>"
    # rollout messages carry generated call ids; everything else round-trips
    strip = [{k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id")} for m in msgs]
    assert [
        {k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id")}
        for m in rollout.messages
    ] == strip


def test_tiny_turns_tile_the_sequence(tiny_chat):
    conv = render_dialogue(tiny_chat, dialogues.dialogue(), dialogues.TOOLS)
    turns = conv.turns
    assert [t.message_index for t in turns] == list(range(len(dialogues.DIALOGUE)))
    assert turns[0].start == 0 and turns[-1].end == len(conv)
    assert all(a.end == b.start for a, b in itertools.pairwise(turns))
    eot = tiny_chat.end_of_turn_id
    for t in turns:  # assistant turns end on <|im_end|>, others on <|im_end|> + scaffolding "\n"
        if t.role == "assistant":
            assert conv.tokens[t.end - 1] == eot
        else:
            assert conv.tokens[t.end - 2 : t.end] == [eot] + tiny_chat.encode("\n")


def test_truncated_turn_and_bad_ids_are_refused(tiny_chat):
    conv = Conversation.start(tiny_chat, dialogues.dialogue()[:2], dialogues.TOOLS)
    with pytest.raises(ConversationError, match="out of the tokenizer's range"):
        conv.append_generated([5, len(tiny_chat.tokenizer)])
    with pytest.raises(ConversationError, match="sequence of ints"):
        conv.append_generated("hello")
    with pytest.raises(ConversationError, match="must be integers"):
        conv.append_generated([3.5, 2.0])
    assert len(conv) == len(conv.origins) and conv.messages == dialogues.dialogue()[:2]  # untouched
    parsed = conv.append_generated(
        tiny_chat.encode("<tool_call>\n{\"name\": \"a\"")
    )  # max tokens hit
    assert "unterminated" in parsed.errors[0].reason
    with pytest.raises(ConversationError, match="cut off"):
        conv.append_message({"role": "user", "content": "?"})
    with pytest.raises(ConversationError, match="cut off"):
        conv.generation_prompt()


def test_qwen3_reasoning_and_non_thinking_mode(qwen3_chat):
    from eigen_jax.chat.template import ChatTemplate

    msgs = dialogues.dialogue()[:3]
    msgs[2]["reasoning_content"] = "Two ids given, look both up."
    conv = render_dialogue(qwen3_chat, msgs, dialogues.TOOLS)
    ((s, e),) = _spans(conv.assistant_mask())
    body = dialogues.hermes_text(msgs[2])
    assert (
        qwen3_chat.decode(conv.tokens[s:e])
        == f"<think>\n{msgs[2]['reasoning_content']}\n</think>\n\n{body}<|im_end|>"
    )
    assert qwen3_chat.parse(conv.tokens[s:e]).reasoning == msgs[2]["reasoning_content"]
    assert conv.tokens == qwen3_chat.render(msgs, dialogues.TOOLS)[:-1]
    # enable_thinking=False: the template pre-fills the empty think block, so it is prompt, not policy
    plain = ChatTemplate(qwen3_chat.tokenizer, template_kwargs={"enable_thinking": False})
    msgs = dialogues.dialogue()[:3]
    conv = render_dialogue(plain, msgs, dialogues.TOOLS)
    ((s, e),) = _spans(conv.assistant_mask())
    assert plain.decode(conv.tokens[s:e]) == dialogues.hermes_text(msgs[2]) + "<|im_end|>"
    assert plain.decode(conv.tokens[s - 8 : s]).endswith("assistant\n" + QWEN_EMPTY_THINK)
    assert conv.tokens == plain.render(msgs, dialogues.TOOLS)[:-1]


def test_failed_append_leaves_the_conversation_unchanged(tiny_chat, monkeypatch):
    from eigen_jax.chat.template import TemplateError

    conv = Conversation.start(tiny_chat, dialogues.dialogue()[:3], dialogues.TOOLS)
    before = (conv.tokens, conv.origins.tolist(), conv.messages, conv.turns)

    def broken(*args, **kwargs):
        raise TemplateError("boom")

    monkeypatch.setattr(tiny_chat, "assistant_delta", broken)
    with pytest.raises(TemplateError, match="boom"):  # tool results go in, then the assistant fails
        conv.append_messages(dialogues.dialogue()[3:6])
    assert (conv.tokens, conv.origins.tolist(), conv.messages, conv.turns) == before
    monkeypatch.undo()
    conv.append_messages(dialogues.dialogue()[3:6])
    assert conv.tokens == tiny_chat.render(dialogues.dialogue()[:6], dialogues.TOOLS)[:-1]
