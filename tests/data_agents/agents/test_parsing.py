"""Defensive parsing: valid, wrapped, malformed and adversarial model output."""

import json

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


@pytest.mark.parametrize(
    "text, want",
    [
        ('{"ok": true}', {"ok": True}),
        (
            'Sure! ```json\n{"ok": false, "reason": "x"}\n``` hope that helps',
            {"ok": False, "reason": "x"},
        ),
        ('<think>{"ok": "thinking"}</think> {"ok": true}', {"ok": True}),
        ('prefix {not json} then {"ok": true}', {"ok": True}),
        ('[1, 2]', [1, 2]),
    ],
)
def test_extract_json_finds_the_payload(text, want):
    assert extract_json(text) == want


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "empty output"),
        (None, "empty output"),
        ("no braces here", "no JSON"),
        ('{"ok": true, "reason": "trunc', "invalid JSON"),
    ],
)
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
        parse_model(
            "\x00\x01 garbage <tool_call> {", Judgement, stage="s", attribution="trajectory"
        )
    assert e.value.category == "invalid_json" and e.value.attribution == "trajectory"


def test_parse_tool_calls_decodes_and_flags_bad_arguments():
    msg = (
        completion(
            None, [("get", {"id": "C1"}), ("bad", "{not json"), ("lst", "[1]"), ("empty", "")]
        )
        .choices[0]
        .message
    )
    calls = parse_tool_calls(msg)
    assert [c.name for c in calls] == ["get", "bad", "lst", "empty"]
    assert calls[0].arguments == {"id": "C1"} and calls[0].error is None
    assert calls[1].arguments == {} and "not valid JSON" in calls[1].error
    assert "must be a JSON object" in calls[2].error
    assert calls[3].arguments == {} and calls[3].error is None
    assert calls[0].record() == {"id": "call_0", "name": "get", "arguments": {"id": "C1"}}


# Hostile outputs: each must become a StageFailure / tool error, never an exception.
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a": ' * 5000 + "1" + "}" * 5000


@pytest.mark.parametrize(
    "text", [DEEP, DEEP_OBJECT, "x" + "{" * 200_000, '{"k": "' + "y" * 2_000_000 + '"}']
)
def test_hostile_json_is_a_stage_failure(text):
    import pydantic

    from data_agents.agents.parsing import StageFailure, parse_model

    class Anything(pydantic.BaseModel):
        k: str = ""

    with pytest.raises(StageFailure) as info:
        parse_model(text, Anything, stage="task_synth")
    assert info.value.category == "invalid_json"
    assert "nested deeper" in info.value.reason or "too large" in info.value.reason


def test_depth_limit_matches_the_decoder_below_it():
    """Nesting just inside the limit still parses (to the same value json.loads gives); brackets
    inside strings do not count."""
    from data_agents.agents.parsing import MAX_JSON_DEPTH, bounded_loads

    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert bounded_loads(ok) == json.loads(ok)
    quoted = json.dumps({"s": "[" * 1000})
    assert bounded_loads(quoted) == {"s": "[" * 1000}
    with pytest.raises(ValueError, match="nested deeper"):
        bounded_loads("[" + ok + "]")


def test_hostile_tool_arguments_become_tool_errors():
    from types import SimpleNamespace as NS

    from data_agents.agents.parsing import parse_tool_calls

    message = NS(
        tool_calls=[
            NS(id="c1", function=NS(name="f", arguments=DEEP)),
            NS(id="c2", function=NS(name="g", arguments='{"x": 1}')),
        ]
    )
    first, second = parse_tool_calls(message)
    assert first.error and "nested deeper" in first.error and first.arguments == {}
    assert second.error is None and second.arguments == {"x": 1}
