"""Tool-call parsers: valid, several, malformed, missing name, Llama 3.1 JSON; never raise."""

from __future__ import annotations

import json

import pytest

from eigen_jax.chat import tool_parsers as tp


def _block(obj) -> str:
    return f"<tool_call>\n{json.dumps(obj)}\n</tool_call>"


def test_hermes_single_call_and_content():
    out = tp.parse_hermes("Checking.\n" + _block({"name": "get_user", "arguments": {"id": "u1"}}))
    assert out.content == "Checking."
    assert out.tool_calls == (tp.ToolCall("get_user", {"id": "u1"}),)
    assert out.errors == () and out.reasoning is None


def test_hermes_several_calls_keep_order_and_arguments():
    calls = [
        {"name": "a", "arguments": {"x": [1, 2], "y": {"z": None}}},
        {"name": "b", "arguments": {}},
        {"name": "a", "arguments": {"x": "é"}},
    ]
    out = tp.parse_hermes("".join(_block(c) for c in calls))
    assert [(c.name, c.arguments) for c in out.tool_calls] == [
        (c["name"], c["arguments"]) for c in calls
    ]
    assert out.content == ""


def test_hermes_malformed_json_is_an_error_value_and_good_calls_survive():
    text = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}\n</tool_call>" + _block(
        {"name": "b"}
    )
    out = tp.parse_hermes(text)
    assert [c.name for c in out.tool_calls] == ["b"]
    assert len(out.errors) == 1 and "invalid JSON" in out.errors[0].reason
    assert '"name": "a"' in out.errors[0].raw
    assert "invalid JSON" in out.errors[0].to_tool_message()


@pytest.mark.parametrize(
    "obj,reason",
    [
        ({"arguments": {"x": 1}}, "missing or empty 'name'"),
        ({"name": "  ", "arguments": {}}, "missing or empty 'name'"),
        ({"name": 3, "arguments": {}}, "missing or empty 'name'"),
        ({"name": "a", "arguments": [1]}, "must be a JSON object"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_hermes_invalid_calls(obj, reason):
    out = tp.parse_hermes(_block(obj))
    assert out.tool_calls == ()
    assert len(out.errors) == 1 and reason in out.errors[0].reason


def test_hermes_string_arguments_are_decoded_and_bad_strings_reported():
    ok = tp.parse_hermes(_block({"name": "a", "arguments": json.dumps({"k": 1})}))
    assert ok.tool_calls == (tp.ToolCall("a", {"k": 1}),)
    bad = tp.parse_hermes(_block({"name": "a", "arguments": "{k: 1"}))
    assert bad.tool_calls == () and "not JSON" in bad.errors[0].reason


def test_hermes_unterminated_and_stray_close_tags():
    out = tp.parse_hermes("ok <tool_call>\n{\"name\": \"a\", \"argu")
    assert out.content == "ok" and out.tool_calls == ()
    assert out.errors[0].reason == "unterminated <tool_call> block"
    # an unterminated block followed by a good one: the good one still counts
    out = tp.parse_hermes("<tool_call>{\"name\": \"a\"" + _block({"name": "b", "arguments": {}}))
    assert [c.name for c in out.tool_calls] == ["b"] and len(out.errors) == 1
    out = tp.parse_hermes("text </tool_call>")
    assert out.content == "text" and "without a matching" in out.errors[0].reason


def test_reasoning_split_like_qwen3():
    out = tp.parse_hermes(
        "<think>\nplan: look up\n</think>\n\nSure." + _block({"name": "a", "arguments": {}})
    )
    assert out.reasoning == "plan: look up" and out.content == "Sure." and len(out.tool_calls) == 1
    empty = tp.parse_hermes("<think>\n\n</think>\n\nHi")
    assert empty.reasoning == "" and empty.content == "Hi"
    msg = empty.to_message()
    assert msg == {"role": "assistant", "content": "Hi", "reasoning_content": ""}


def test_llama3_json_single_and_several_calls():
    out = tp.parse_llama3_json('{"name": "get_weather", "parameters": {"city": "Paris"}}')
    assert out.tool_calls == (tp.ToolCall("get_weather", {"city": "Paris"}),) and out.content == ""
    out = tp.parse_llama3_json(
        '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "arguments": {"y": 2}}'
    )
    assert [(c.name, c.arguments) for c in out.tool_calls] == [("a", {"x": 1}), ("b", {"y": 2})]


def test_llama3_json_plain_text_and_errors():
    assert tp.parse_llama3_json("The weather is fine.").content == "The weather is fine."
    out = tp.parse_llama3_json('{"name": "a", "parameters": {"x": 1}')
    assert out.tool_calls == () and "invalid JSON" in out.errors[0].reason
    out = tp.parse_llama3_json('{"parameters": {}}')
    assert "missing or empty 'name'" in out.errors[0].reason
    out = tp.parse_llama3_json("<|python_tag|>print(1)")
    assert "not followed by a JSON object" in out.errors[0].reason


def test_unknown_parser_name_is_a_clear_error():
    assert tp.get_tool_parser("hermes") is tp.parse_hermes
    with pytest.raises(ValueError, match="unknown tool parser 'xml'.*hermes"):
        tp.get_tool_parser("xml")


@pytest.mark.parametrize("parser", ["hermes", "llama3_json"])
@pytest.mark.parametrize(
    "payload",
    [
        '{"name": "f", "arguments": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"name": "f", "arguments": "' + "[" * 100_000 + '"}',
        '{"name": "f", "arguments": {"x": "' + "y" * 1_100_000 + '"}}',
    ],
)
def test_hostile_tool_calls_are_parse_errors_not_exceptions(parser, payload):
    from eigen_jax.chat.tool_parsers import get_tool_parser

    text = f"<tool_call>{payload}</tool_call>" if parser == "hermes" else payload
    parsed = get_tool_parser(parser)(text)
    assert not parsed.tool_calls and len(parsed.errors) == 1
    assert any(w in parsed.errors[0].reason for w in ("nested", "too large", "not JSON"))
    assert len(parsed.errors[0].raw) <= 1_100_000
