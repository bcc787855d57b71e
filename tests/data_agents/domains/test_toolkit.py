"""Toolkit: schemas from signatures, validation, error-as-result, private DBs, dual control."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import annotated_types
import pydantic
import pytest

from data_agents.domains.task import EnvAssertion, EnvFunctionCall, InitializationData, InitialState
from data_agents.domains.toolkit import Tool, ToolError, ToolkitEnvironment, make_tool, tool


class Item(pydantic.BaseModel):
    qty: int
    due: dt.date | None = None


class ShopDB(pydantic.BaseModel):
    items: dict[str, Item]


class PhoneDB(pydantic.BaseModel):
    airplane_mode: bool = False


@tool
def get_item(db: ShopDB, item_id: str) -> dict:
    """Look up an item.

    Args:
        item_id: The item's id, such as "I1".
    """
    if item_id not in db.items:
        raise ToolError(f"item {item_id} not found")
    return db.items[item_id]


@tool(kind="write")
def restock(db: ShopDB, item_id: str, qty: int, due: dt.date, note: str = "") -> dict:
    """Add stock to an item.

    Args:
        item_id: The item's id.
        qty: How many units to add.
        due: Delivery date, YYYY-MM-DD.
        note: Free text.
    """
    db.items[item_id].qty += qty
    db.items[item_id].due = due
    return {"item_id": item_id, "qty": db.items[item_id].qty}


@tool
def broken(db: ShopDB) -> str:
    """A tool with a bug."""
    return str(1 / 0)


@tool(kind="write")
def toggle_airplane_mode(db: PhoneDB) -> str:
    """Flip airplane mode on the user's phone."""
    db.airplane_mode = not db.airplane_mode
    return "on" if db.airplane_mode else "off"


def has_qty(db: ShopDB, item_id: str, qty: int) -> bool:
    """Whether an item has exactly `qty` units."""
    return db.items[item_id].qty == qty


def _env(**kwargs) -> ToolkitEnvironment:
    db = ShopDB(items={"I1": Item(qty=2), "I2": Item(qty=0)})
    return ToolkitEnvironment(db, [get_item, restock, broken], assertions=[has_qty], **kwargs)


def test_schema_is_derived_from_signature_and_docstring():
    schema = {s["function"]["name"]: s for s in _env().tools_schema()}
    fn = schema["restock"]["function"]
    assert schema["restock"]["type"] == "function"
    assert fn["description"] == "Add stock to an item."
    props = fn["parameters"]["properties"]
    assert set(props) == {"item_id", "qty", "due", "note"}  # the db parameter is hidden
    assert props["qty"] == {"type": "integer", "description": "How many units to add."}
    assert props["due"] == {
        "type": "string",
        "format": "date",
        "description": "Delivery date, YYYY-MM-DD.",
    }
    assert props["note"]["default"] == ""
    assert sorted(fn["parameters"]["required"]) == ["due", "item_id", "qty"]
    assert fn["parameters"]["additionalProperties"] is False
    assert "title" not in json.dumps(fn["parameters"])
    assert restock.mutates and not get_item.mutates


def test_schema_agrees_with_validation_per_jsonschema():
    """The JSON schema (checked by an independent validator) and pydantic accept the same calls."""
    jsonschema = pytest.importorskip("jsonschema")
    params = restock.schema()["function"]["parameters"]
    good = {"item_id": "I1", "qty": 3, "due": "2025-01-02"}
    jsonschema.validate(good, params)
    restock.validate(good)
    for bad in ({"item_id": "I1", "qty": 3}, {"item_id": "I1", "qty": 3, "due": "x", "y": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, params)
        with pytest.raises(pydantic.ValidationError):
            restock.validate(bad)


def test_arguments_are_coerced_and_write_tools_change_the_private_db():
    env = _env()
    result = env.call("restock", {"item_id": "I1", "qty": "3", "due": "2025-07-01"})
    assert not result.error and json.loads(result.content) == {"item_id": "I1", "qty": 5}
    assert env.db.items["I1"].due == dt.date(2025, 7, 1)  # coerced to a date
    assert env.db_state()["items"]["I1"] == {"qty": 5, "due": "2025-07-01"}
    assert _env().db.items["I1"].qty == 2  # a fresh env starts from the original data
    assert [r.name for r in env.call_log] == ["restock"]


@pytest.mark.parametrize(
    "name,args,needle",
    [
        ("restock", {"item_id": "I1", "due": "2025-07-01"}, "qty: Field required"),
        (
            "restock",
            {"item_id": "I1", "qty": "many", "due": "2025-07-01"},
            "qty: Input should be a valid integer",
        ),
        (
            "restock",
            {"item_id": "I1", "qty": 1, "due": "2025-07-01", "color": "red"},
            "color: Extra inputs",
        ),
        ("get_item", {"item_id": "I9"}, "Error: item I9 not found"),
        (
            "nope",
            {},
            "unknown tool 'nope' for the assistant; known tools: broken, get_item, restock",
        ),
        ("broken", {}, "broken failed: ZeroDivisionError"),
    ],
)
def test_errors_are_results_with_a_clear_text(name, args, needle):
    env = _env()
    before = env.db_hash()
    result = env.call(name, args)
    assert result.error and needle in result.content
    assert env.db_hash() == before


def test_non_object_arguments_are_an_error_result():
    result = _env().call("get_item", ["I1"])
    assert result.error and "must be a JSON object" in result.content


def test_caller_db_is_never_mutated():
    db = ShopDB(items={"I1": Item(qty=2)})
    env = ToolkitEnvironment(db, [restock])
    env.call("restock", {"item_id": "I1", "qty": 1, "due": "2025-01-01"})
    assert db.items["I1"].qty == 2 and env.db.items["I1"].qty == 3


def test_dual_control_user_tools_act_on_the_user_db():
    env = _env(user_db=PhoneDB(), user_tools=[toggle_airplane_mode])
    assert [s["function"]["name"] for s in env.tools_schema("user")] == ["toggle_airplane_mode"]
    agent_hash = env.db_hash()
    assert env.call("toggle_airplane_mode", {}, "user").content == "on"
    assert env.db_state("user") == {"airplane_mode": True} and env.db_hash() == agent_hash
    assert env.call("toggle_airplane_mode", {}, "assistant").error  # not an agent tool
    with pytest.raises(ValueError, match="user_tools need a user_db"):
        ToolkitEnvironment(ShopDB(items={}), [], user_tools=[toggle_airplane_mode])


def test_assertions_run_named_functions():
    env = _env()
    assert env.run_assertion(
        EnvAssertion(
            env_type="assistant", func_name="has_qty", arguments={"item_id": "I1", "qty": 2}
        )
    )
    assert env.run_assertion(
        EnvAssertion(
            env_type="assistant",
            func_name="has_qty",
            arguments={"item_id": "I1", "qty": 5},
            assert_value=False,
        )
    )
    with pytest.raises(ValueError, match="unknown assistant assertion 'missing'"):
        env.run_assertion(EnvAssertion(env_type="assistant", func_name="missing"))


def test_initial_state_merges_data_and_runs_actions():
    env = _env()
    env.apply_initial_state(
        InitialState(
            initialization_data=InitializationData(agent_data={"items": {"I3": {"qty": 7}}}),
            initialization_actions=[
                EnvFunctionCall(
                    env_type="assistant",
                    func_name="restock",
                    arguments={"item_id": "I2", "qty": 1, "due": "2025-02-03"},
                )
            ],
        )
    )
    assert env.db.items["I3"].qty == 7 and env.db.items["I2"].qty == 1
    assert env.db.items["I1"].qty == 2 and env.call_log == []
    with pytest.raises(ValueError, match="agent_data does not fit"):
        env.apply_initial_state(
            InitialState(
                initialization_data=InitializationData(
                    agent_data={"items": {"I4": {"qty": "lots"}}}
                )
            )
        )
    with pytest.raises(ValueError, match="initialization action get_item failed"):
        env.apply_initial_state(
            InitialState(
                initialization_actions=[
                    EnvFunctionCall(
                        env_type="assistant", func_name="get_item", arguments={"item_id": "zz"}
                    )
                ]
            )
        )


def test_make_tool_rejects_undescribable_functions():
    def no_doc(db, x: int):
        return x

    def no_hint(db, x):
        """Doc."""

    def var_kw(db, **kw):
        """Doc."""

    for f, msg in (
        (no_doc, "needs a docstring"),
        (no_hint, "needs a type hint"),
        (var_kw, r"\*args/\*\*kwargs"),
    ):
        with pytest.raises(ValueError, match=msg):
            make_tool(f)
    with pytest.raises(ValueError, match="tool kind"):
        make_tool(has_qty, kind="delete")
    with pytest.raises(ValueError, match="duplicate tool name"):
        ToolkitEnvironment(ShopDB(items={}), [get_item, get_item])
    assert isinstance(make_tool(has_qty), Tool)


class AddressDB(pydantic.BaseModel):
    zips: dict[str, str]


@tool(kind="write")
def set_zip(
    db: AddressDB,
    customer_id: str,
    zip: Annotated[str, pydantic.StringConstraints(pattern=r"^\d{5}$", max_length=5)],
    note: Annotated[str, annotated_types.MaxLen(8)] = "",
) -> str:
    """Replace a customer's zip code.

    Args:
        customer_id: The customer's id.
        zip: 5-digit zip code.
        note: Short note.
    """
    if customer_id not in db.zips:
        raise ToolError(f"customer {customer_id} not found")
    db.zips[customer_id] = zip
    return "ok"


def _address_env() -> ToolkitEnvironment:
    return ToolkitEnvironment(AddressDB(zips={"C1": "97701"}), [set_zip])


def test_annotated_constraints_reach_the_schema():
    """The constraints are in the schema, and an independent validator enforces them there."""
    jsonschema = pytest.importorskip("jsonschema")
    params = set_zip.schema()["function"]["parameters"]
    assert params["properties"]["zip"] == {
        "type": "string",
        "pattern": r"^\d{5}$",
        "maxLength": 5,
        "description": "5-digit zip code.",
    }
    assert params["properties"]["note"]["maxLength"] == 8
    jsonschema.validate({"customer_id": "C1", "zip": "84532"}, params)
    for bad in (
        {"customer_id": "C1", "zip": "ABCDEFGH"},
        {"customer_id": "C1", "zip": "8453"},
        {"customer_id": "C1", "zip": "84532", "note": "x" * 9},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, params)


@pytest.mark.parametrize(
    "args,needle",
    [
        ({"zip": "ABCDEFGH"}, "zip: String should have at most 5 characters"),
        ({"zip": "ABCDE"}, "zip: String should match pattern '^\\d{5}$'"),
        ({"zip": "8453"}, "zip: String should match pattern"),
        ({"zip": "84532", "note": "x" * 9}, "note: "),
    ],
)
def test_annotated_constraint_violation_is_a_tool_error_and_db_is_unchanged(args, needle):
    env = _address_env()
    before = env.db_state()
    result = env.call("set_zip", {"customer_id": "C1", **args})
    assert result.error and needle in result.content, result.content
    assert env.db_state() == before == {"zips": {"C1": "97701"}}
    assert not env.call("set_zip", {"customer_id": "C1", "zip": "84532"}).error
    assert env.db_state() == {"zips": {"C1": "84532"}}


@pytest.mark.parametrize(
    "name,args",
    [
        ("get_item", {"item_id": "I" * 5_000_000}),  # echoed by the tool's own ToolError
        ("restock", {"item_id": "I1", "qty": "9" * 5_000_000, "due": "2025-07-01"}),
        ("n" * 5_000_000, {}),  # an unknown tool's name is echoed too
        ("get_item", {"item_id": {"deep": ["x" * 5_000_000]}}),
    ],
)
def test_huge_arguments_are_not_echoed_whole_in_error_texts(name, args):
    result = _env().call(name, args)
    assert result.error and len(result.content) <= 2_100, len(result.content)
    assert "Error" in result.content


def test_long_echoed_value_is_cut_with_a_marker_naming_its_size():
    result = _env().call("get_item", {"item_id": "I" * 5_000_000})
    assert result.content.startswith("Error: item " + "I" * 200 + "...[truncated, 5000000 chars]")
    assert result.content.endswith(" not found")
