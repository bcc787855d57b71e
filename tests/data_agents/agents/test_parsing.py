"""Defensive parsing: valid, wrapped, malformed and adversarial model output."""
import pydantic
import pytest

from data_agents.agents.parsing import (
    StageFailure,
    extract_json,
    parse_model,
    parse_tool_calls,
)
from tests.data_agents.agents.fake_llm import completion


class Judgement(pydantic.BaseModel):
    ok: bool
    reason: str = ""


@pytest.mark.parametrize("text, want", [
    ('{"ok": true}', {"ok": True}),
    ('Sure! ```json\n{"ok": false, "reason": "x"}\n``` hope that helps', {"ok": False, "reason": "x"}),
    ('<think>{"ok": "thinking"}</think> {"ok": true}', {"ok": True}),
    ('prefix {not json} then {"ok": true}', {"ok": True}),
    ('[1, 2]', [1, 2]),
])
def test_extract_json_finds_the_payload(text, want):
    assert extract_json(text) == want


@pytest.mark.parametrize("text, needle", [
    ("", "empty output"), (None, "empty output"), ("no braces here", "no JSON"),
    ('{"ok": true, "reason": "trunc', "invalid JSON"),
])
def test_extract_json_names_the_problem(text, needle):
    with pytest.raises(ValueError, match=needle):
        extract_json(text)


def test_parse_model_schema_failure_names_the_field():
    with pytest.raises(StageFailure) as e:
        parse_model('{"ok": "maybe", "reason": 3}', Judgement, stage="task_verify")
    f = e.value
    assert (f.stage, f.category, f.attribution) == ("task_verify", "schema", "task")
    assert "ok" in f.reason and f.to_json()["raw"].startswith('{"ok"')


def test_parse_model_invalid_json_is_a_failure_not_a_crash():
    with pytest.raises(StageFailure) as e:
        parse_model("\x00\x01 garbage <tool_call> {", Judgement, stage="s", attribution="trajectory")
    assert e.value.category == "invalid_json" and e.value.attribution == "trajectory"


def test_parse_tool_calls_decodes_and_flags_bad_arguments():
    msg = completion(None, [("get", {"id": "C1"}), ("bad", "{not json"), ("lst", "[1]"),
                            ("empty", "")]).choices[0].message
    calls = parse_tool_calls(msg)
    assert [c.name for c in calls] == ["get", "bad", "lst", "empty"]
    assert calls[0].arguments == {"id": "C1"} and calls[0].error is None
    assert calls[1].arguments == {} and "not valid JSON" in calls[1].error
    assert "must be a JSON object" in calls[2].error
    assert calls[3].arguments == {} and calls[3].error is None
    assert calls[0].to_message_call() == {"id": "call_0", "name": "get", "arguments": {"id": "C1"}}
