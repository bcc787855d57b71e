"""The outfitter's agent tools: plain functions over `OutfitterDB`, turned into `Tool`s.

Tools enforce only what the back-office system itself enforces (ids exist, dates make sense, stock
is available, points cover a redemption). The *policy* (identity first, confirmation, rental
limits, gold-only gear, no change to started rentals...) is the agent's job, as in tau2: a tool
will happily cancel a rental that has already started, and the checker then sees the wrong DB.
Results are compact JSON so dialogues stay short.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import pydantic

from data_agents.domains.outfitter.db import (
    CATEGORIES,
    FULL_REFUND_DAYS,
    POINTS_PER_REDEMPTION,
    REDEMPTION_DOLLARS,
    Address,
    Customer,
    OutfitterDB,
    Rental,
    rental_days,
)
from data_agents.domains.toolkit import ToolError, tool

Last4 = Annotated[str, pydantic.StringConstraints(pattern=r"^\d{4}$")]
Zip = Annotated[str, pydantic.StringConstraints(pattern=r"^\d{5}$")]
OPEN = ("reserved", "active")


def _customer(db: OutfitterDB, customer_id: str) -> Customer:
    if customer_id not in db.customers:
        raise ToolError(f"customer {customer_id} not found")
    return db.customers[customer_id]


def _rental(db: OutfitterDB, rental_id: str) -> Rental:
    if rental_id not in db.rentals:
        raise ToolError(f"rental {rental_id} not found")
    return db.rentals[rental_id]


def units_available(
    db: OutfitterDB, gear_id: str, start: dt.date, end: dt.date, exclude: str | None = None
) -> int:
    """Units of `gear_id` not held by an open rental overlapping [start, end)."""
    busy = sum(
        1
        for r in db.rentals.values()
        if r.gear_id == gear_id
        and r.status in OPEN
        and r.id != exclude
        and r.start_date < end
        and start < r.end_date
    )
    return db.gear[gear_id].units - busy


def _check_dates(db: OutfitterDB, start: dt.date, end: dt.date) -> None:
    if start < db.today:
        raise ToolError(f"start date {start} is in the past (today is {db.today})")
    if end <= start:
        raise ToolError("end date must be after the start date")


def rental_view(db: OutfitterDB, r: Rental) -> dict[str, Any]:
    return {
        "rental_id": r.id,
        "customer_id": r.customer_id,
        "gear_id": r.gear_id,
        "gear": db.gear[r.gear_id].name,
        "start": r.start_date.isoformat(),
        "end": r.end_date.isoformat(),
        "status": r.status,
        "total": r.total,
        "points_applied": r.points_applied,
    }


@tool
def find_customer_by_email(db: OutfitterDB, email: str) -> dict[str, str]:
    """Find a customer id by email address (identity check).

    Args:
        email: The customer's email address.
    """
    for c in db.customers.values():
        if c.email.lower() == email.strip().lower():
            return {"customer_id": c.id}
    raise ToolError(f"no customer with email {email}")


@tool
def find_customer_by_name_zip(
    db: OutfitterDB, first_name: str, last_name: str, zip: Zip
) -> dict[str, str]:
    """Find a customer id by full name and address zip code (identity check).

    Args:
        first_name: The customer's first name.
        last_name: The customer's last name.
        zip: The 5-digit zip code of the customer's address.
    """
    for c in db.customers.values():
        if (c.first_name.lower(), c.last_name.lower(), c.address.zip) == (
            first_name.strip().lower(),
            last_name.strip().lower(),
            zip,
        ):
            return {"customer_id": c.id}
    raise ToolError(f"no customer named {first_name} {last_name} with zip {zip}")


@tool
def get_customer(db: OutfitterDB, customer_id: str) -> dict[str, Any]:
    """Get a customer's tier, points, card, address and open (reserved or active) rentals.

    Args:
        customer_id: The customer's id, such as "C104".
    """
    c = _customer(db, customer_id)
    a = c.address
    return {
        "customer_id": c.id,
        "name": f"{c.first_name} {c.last_name}",
        "tier": c.tier,
        "points": c.points,
        "card_last4": c.card_last4,
        "address": f"{a.street}, {a.city} {a.zip}",
        "open_rentals": sorted(
            r.id for r in db.rentals.values() if r.customer_id == c.id and r.status in OPEN
        ),
    }


@tool
def get_rental(db: OutfitterDB, rental_id: str) -> dict[str, Any]:
    """Get a rental's owner, gear, dates, status and total.

    Args:
        rental_id: The rental's id, such as "R2051".
    """
    return rental_view(db, _rental(db, rental_id))


@tool
def search_gear(db: OutfitterDB, category: str) -> list[dict[str, Any]]:
    """List the gear of one category with daily rates and whether it is gold-only.

    Args:
        category: One of tent, sleeping_bag, backpack, stove, kayak, bike.
    """
    if category not in CATEGORIES:
        raise ToolError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    return [
        {"gear_id": g.id, "name": g.name, "daily_rate": g.daily_rate, "gold_only": g.gold_only}
        for g in db.gear.values()
        if g.category == category
    ]


@tool
def check_availability(
    db: OutfitterDB, gear_id: str, start_date: dt.date, end_date: dt.date
) -> dict[str, Any]:
    """Count the units of a gear item free for a date range (end date = return day).

    Args:
        gear_id: The gear's id, such as "G10".
        start_date: First day of the rental, YYYY-MM-DD.
        end_date: Return day, YYYY-MM-DD.
    """
    if gear_id not in db.gear:
        raise ToolError(f"gear {gear_id} not found")
    return {
        "gear_id": gear_id,
        "available": max(0, units_available(db, gear_id, start_date, end_date)),
    }


@tool(kind="write")
def create_rental(
    db: OutfitterDB, customer_id: str, gear_id: str, start_date: dt.date, end_date: dt.date
) -> dict[str, Any]:
    """Reserve one unit of gear for a customer; the total is daily rate times days.

    Args:
        customer_id: The customer's id.
        gear_id: The gear's id.
        start_date: First day of the rental, YYYY-MM-DD.
        end_date: Return day, YYYY-MM-DD.
    """
    _customer(db, customer_id)
    if gear_id not in db.gear:
        raise ToolError(f"gear {gear_id} not found")
    _check_dates(db, start_date, end_date)
    if units_available(db, gear_id, start_date, end_date) < 1:
        raise ToolError(f"{gear_id} is not available from {start_date} to {end_date}")
    rid = f"R{max((int(r[1:]) for r in db.rentals), default=1999) + 1}"
    db.rentals[rid] = Rental(
        id=rid,
        customer_id=customer_id,
        gear_id=gear_id,
        start_date=start_date,
        end_date=end_date,
        status="reserved",
        total=db.gear[gear_id].daily_rate * rental_days(start_date, end_date),
    )
    return rental_view(db, db.rentals[rid])


@tool(kind="write")
def cancel_rental(db: OutfitterDB, rental_id: str) -> dict[str, Any]:
    """Cancel a rental and refund it: in full if gold tier or 3+ days before the start, else 50%.

    Args:
        rental_id: The rental's id.
    """
    r = _rental(db, rental_id)
    if r.status in ("cancelled", "returned"):
        raise ToolError(f"rental {rental_id} is already {r.status}")
    gold = db.customers[r.customer_id].tier == "gold"
    full = gold or (r.start_date - db.today).days >= FULL_REFUND_DAYS
    r.refund = r.total if full else r.total // 2
    r.status = "cancelled"
    return {"rental_id": r.id, "status": r.status, "refund": r.refund}


@tool(kind="write")
def modify_rental_dates(
    db: OutfitterDB, rental_id: str, start_date: dt.date, end_date: dt.date
) -> dict[str, Any]:
    """Move a rental to new dates and recompute its total.

    Args:
        rental_id: The rental's id.
        start_date: New first day, YYYY-MM-DD.
        end_date: New return day, YYYY-MM-DD.
    """
    r = _rental(db, rental_id)
    if r.status in ("cancelled", "returned"):
        raise ToolError(f"rental {rental_id} is already {r.status}")
    _check_dates(db, start_date, end_date)
    if units_available(db, r.gear_id, start_date, end_date, exclude=r.id) < 1:
        raise ToolError(f"{r.gear_id} is not available from {start_date} to {end_date}")
    discount = REDEMPTION_DOLLARS if r.points_applied else 0
    r.start_date, r.end_date = start_date, end_date
    r.total = db.gear[r.gear_id].daily_rate * rental_days(start_date, end_date) - discount
    return rental_view(db, r)


@tool(kind="write")
def update_address(
    db: OutfitterDB, customer_id: str, street: str, city: str, zip: Zip
) -> dict[str, Any]:
    """Replace a customer's address.

    Args:
        customer_id: The customer's id.
        street: Street and number, such as "12 Oak St".
        city: City name.
        zip: 5-digit zip code.
    """
    c = _customer(db, customer_id)
    c.address = Address(street=street, city=city, zip=zip)
    return {"customer_id": c.id, "address": f"{street}, {city} {zip}"}


@tool(kind="write")
def update_payment_card(db: OutfitterDB, customer_id: str, card_last4: Last4) -> dict[str, Any]:
    """Replace the card on file (identified by its last four digits).

    Args:
        customer_id: The customer's id.
        card_last4: Last four digits of the new card.
    """
    c = _customer(db, customer_id)
    c.card_last4 = card_last4
    return {"customer_id": c.id, "card_last4": card_last4}


@tool(kind="write")
def redeem_points(db: OutfitterDB, rental_id: str) -> dict[str, Any]:
    """Spend 100 of the owner's loyalty points for $10 off a rental's total.

    Args:
        rental_id: The rental's id.
    """
    r = _rental(db, rental_id)
    c = db.customers[r.customer_id]
    if c.points < POINTS_PER_REDEMPTION:
        raise ToolError(f"customer {c.id} has only {c.points} points")
    c.points -= POINTS_PER_REDEMPTION
    r.total -= REDEMPTION_DOLLARS
    r.points_applied = True
    return {"rental_id": r.id, "total": r.total, "points_left": c.points}


@tool(kind="generic")
def transfer_to_human_agents(db: OutfitterDB, summary: str) -> str:
    """Hand the conversation to a human agent; use only for requests the policy sends to humans.

    Args:
        summary: A one-line summary of the customer's issue.
    """
    return "Transfer successful"


AGENT_TOOLS = [
    find_customer_by_email,
    find_customer_by_name_zip,
    get_customer,
    get_rental,
    search_gear,
    check_availability,
    create_rental,
    cancel_rental,
    modify_rental_dates,
    update_address,
    update_payment_card,
    redeem_points,
    transfer_to_human_agents,
]


# -- env assertion functions (read-only, bool-valued, for tau2-style `env_assertions`) ----------
def rental_has_status(db: OutfitterDB, rental_id: str, status: str) -> bool:
    """Whether a rental is in `status` (e.g. "cancelled").

    Args:
        rental_id: The rental's id.
        status: reserved, active, returned or cancelled.
    """
    return _rental(db, rental_id).status == status


def open_rental_count_is(db: OutfitterDB, customer_id: str, count: int) -> bool:
    """Whether a customer holds exactly `count` reserved or active rentals.

    Args:
        customer_id: The customer's id.
        count: The expected number of open rentals.
    """
    return (
        sum(1 for r in db.rentals.values() if r.customer_id == customer_id and r.status in OPEN)
        == count
    )


ASSERTIONS = [rental_has_status, open_rental_count_is]
