"""Outfitter tools against hand-computed outcomes, and the domain's shape (tools, policy)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from data_agents.domains import load
from data_agents.domains.outfitter import POLICY
from data_agents.domains.outfitter.db import Address, Customer, Gear, OutfitterDB, Rental
from data_agents.domains.outfitter.tools import AGENT_TOOLS
from data_agents.domains.task import EnvAssertion
from data_agents.domains.toolkit import ToolkitEnvironment

D = dt.date


def _env(tier: str = "basic", points: int = 150) -> ToolkitEnvironment:
    """Hand-built world: one tent with 2 units, one of them booked 06-12 → 06-15."""
    cust = Customer(
        id="C1",
        first_name="Ana",
        last_name="Lopez",
        email="ana@mail.com",
        address=Address(street="1 Oak St", city="Bend", zip="97701"),
        tier=tier,
        card_last4="1111",
        points=points,
    )
    other = cust.model_copy(update={"id": "C2", "email": "o@mail.com"})
    gear = Gear(id="G1", name="Alpine 2P Tent", category="tent", daily_rate=25, units=2)
    rentals = {
        "R1": Rental(
            id="R1",
            customer_id="C1",
            gear_id="G1",
            start_date=D(2025, 6, 12),
            end_date=D(2025, 6, 15),
            status="reserved",
            total=75,
        ),
        "R2": Rental(
            id="R2",
            customer_id="C2",
            gear_id="G1",
            start_date=D(2025, 6, 20),
            end_date=D(2025, 6, 22),
            status="reserved",
            total=50,
        ),
    }
    db = OutfitterDB(
        today=D(2025, 6, 10),
        customers={"C1": cust, "C2": other},
        gear={"G1": gear},
        rentals=rentals,
    )
    return ToolkitEnvironment(db, AGENT_TOOLS)


def _ok(env, name, **args):
    result = env.call(name, args)
    assert not result.error, result.content
    return json.loads(result.content) if result.content.startswith(("{", "[")) else result.content


def test_domain_has_enough_tools_and_write_tools():
    env = load("outfitter", n_train=1, n_test=1).make_env()
    tools = env.tools()
    assert len(tools) >= 8 and sum(t.mutates for t in tools.values()) >= 4
    for schema in env.tools_schema():
        assert schema["function"]["description"]


def test_policy_has_at_least_six_rules():
    rules = re.findall(r"^\d+\. \*\*", POLICY, flags=re.MULTILINE)
    assert len(rules) >= 6
    assert "Confirm before every write" in POLICY and "Identity first" in POLICY


def test_identity_lookups():
    env = _env()
    assert _ok(env, "find_customer_by_email", email="ANA@mail.com ") == {"customer_id": "C1"}
    assert _ok(
        env, "find_customer_by_name_zip", first_name="ana", last_name="Lopez", zip="97701"
    ) == {"customer_id": "C1"}
    assert env.call(
        "find_customer_by_name_zip", {"first_name": "Ana", "last_name": "Lopez", "zip": "9770"}
    ).error  # zip must be 5 digits


def test_availability_counts_overlapping_open_rentals():
    env = _env()
    check = lambda s, e: _ok(env, "check_availability", gear_id="G1", start_date=s, end_date=e)[
        "available"
    ]
    assert check("2025-06-14", "2025-06-16") == 1  # overlaps R1
    assert check("2025-06-15", "2025-06-20") == 2  # return day and start day do not overlap
    _ok(
        env,
        "create_rental",
        customer_id="C1",
        gear_id="G1",
        start_date="2025-06-13",
        end_date="2025-06-14",
    )
    assert check("2025-06-13", "2025-06-14") == 0
    result = env.call(
        "create_rental",
        {
            "customer_id": "C1",
            "gear_id": "G1",
            "start_date": "2025-06-13",
            "end_date": "2025-06-14",
        },
    )
    assert result.error and "not available" in result.content


def test_create_rental_id_and_total():
    env = _env()
    r = _ok(
        env,
        "create_rental",
        customer_id="C1",
        gear_id="G1",
        start_date="2025-07-01",
        end_date="2025-07-04",
    )
    assert (r["rental_id"], r["total"], r["status"]) == ("R3", 75, "reserved")
    assert env.call(
        "create_rental",
        {
            "customer_id": "C1",
            "gear_id": "G1",
            "start_date": "2025-06-01",
            "end_date": "2025-06-04",
        },
    ).content.startswith("Error: start date 2025-06-01 is in the past")


@pytest.mark.parametrize(
    "tier,start,refund",
    [("basic", D(2025, 6, 12), 37), ("basic", D(2025, 6, 13), 75), ("gold", D(2025, 6, 11), 75)],
)
def test_cancellation_refund_rules(tier, start, refund):
    env = _env(tier)
    env.db.rentals["R1"].start_date = start
    assert _ok(env, "cancel_rental", rental_id="R1") == {
        "rental_id": "R1",
        "status": "cancelled",
        "refund": refund,
    }
    assert (
        env.call("cancel_rental", {"rental_id": "R1"}).content
        == "Error: rental R1 is already cancelled"
    )


def test_points_and_modify_keep_the_discount():
    env = _env(points=150)
    assert _ok(env, "redeem_points", rental_id="R1") == {
        "rental_id": "R1",
        "total": 65,
        "points_left": 50,
    }
    r = _ok(
        env, "modify_rental_dates", rental_id="R1", start_date="2025-06-16", end_date="2025-06-20"
    )
    assert (r["start"], r["end"], r["total"]) == ("2025-06-16", "2025-06-20", 25 * 4 - 10)
    env.db.customers["C2"].points = 99
    result = env.call("redeem_points", {"rental_id": "R2"})  # points are the owner's (C2)
    assert result.error and "customer C2 has only 99 points" in result.content


def test_updates_and_assertions():
    domain = load("outfitter", n_train=1, n_test=1)
    env = domain.make_env()
    cid = next(iter(env.db.customers))
    _ok(env, "update_address", customer_id=cid, street="5 Elm Dr", city="Moab", zip="84532")
    _ok(env, "update_payment_card", customer_id=cid, card_last4="4242")
    c = env.db.customers[cid]
    assert (c.address.city, c.address.zip, c.card_last4) == ("Moab", "84532", "4242")
    assert (
        "card_last4"
        in env.call("update_payment_card", {"customer_id": cid, "card_last4": "42"}).content
    )
    rid = next(iter(env.db.rentals))
    status = env.db.rentals[rid].status
    assert env.run_assertion(
        EnvAssertion(
            env_type="assistant",
            func_name="rental_has_status",
            arguments={"rental_id": rid, "status": status},
        )
    )


def test_read_tools_never_change_the_db():
    env = _env()
    before = env.db_hash()
    for name, args in [
        ("find_customer_by_email", {"email": "ana@mail.com"}),
        ("get_customer", {"customer_id": "C1"}),
        ("get_rental", {"rental_id": "R1"}),
        ("search_gear", {"category": "tent"}),
        (
            "check_availability",
            {"gear_id": "G1", "start_date": "2025-06-12", "end_date": "2025-06-13"},
        ),
        ("transfer_to_human_agents", {"summary": "tent damaged"}),
    ]:
        assert not env.tools()[name].mutates
        _ok(env, name, **args)
    assert env.db_hash() == before
    assert _ok(env, "get_customer", customer_id="C1")["open_rentals"] == ["R1"]


@pytest.mark.parametrize(
    "name,args,field",
    [
        (
            "update_address",
            {"customer_id": "C1", "street": "5 Elm Dr", "city": "Moab", "zip": "ABCDEFGH"},
            "zip",
        ),
        ("update_payment_card", {"customer_id": "C1", "card_last4": "42a2"}, "card_last4"),
        (
            "find_customer_by_name_zip",
            {"first_name": "Ana", "last_name": "Lopez", "zip": "9770"},
            "zip",
        ),
    ],
)
def test_annotated_formats_are_enforced_and_published(name, args, field):
    """Zip and card formats are argument errors (named, with the pattern); nothing is written."""
    env = _env()
    before = env.db_hash()
    result = env.call(name, args)
    assert result.error and f"{field}: String should match pattern" in result.content
    assert env.db_hash() == before
    schema = {s["function"]["name"]: s for s in env.tools_schema()}[name]
    assert re.fullmatch(
        schema["function"]["parameters"]["properties"][field]["pattern"],
        "97701" if field == "zip" else "4242",
    )
