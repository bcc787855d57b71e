"""The outfitter database: typed records (pydantic) and a seeded base snapshot.

Why a small, regular world: the domain must be learnable by a tiny transformer from a few hundred
dialogues, so ids are short ("C104", "G20", "R2051"), the catalog is fixed, and every task adds
its own customer on top of one shared base snapshot (through the task's `initial_state`), which
also gives the model lookalike customers and other people's rentals as distractors.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Literal

import pydantic

Tier = Literal["basic", "silver", "gold"]
RentalStatus = Literal["reserved", "active", "returned", "cancelled"]

TODAY = dt.date(2025, 6, 10)
# Open rentals (reserved or active) a customer may hold, by membership tier (policy rule).
OPEN_RENTAL_LIMIT: dict[str, int] = {"basic": 2, "silver": 3, "gold": 4}
MAX_RENTAL_DAYS = 14
POINTS_PER_REDEMPTION = 100
REDEMPTION_DOLLARS = 10
FULL_REFUND_DAYS = 3  # cancel at least this many days before the start for a full refund


class _Record(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)


class Address(_Record):
    street: str
    city: str
    zip: str


class Customer(_Record):
    id: str
    first_name: str
    last_name: str
    email: str
    address: Address
    tier: Tier
    card_last4: str
    points: int = pydantic.Field(ge=0)


class Gear(_Record):
    id: str
    name: str
    category: str
    daily_rate: int = pydantic.Field(gt=0)
    units: int = pydantic.Field(ge=0)
    gold_only: bool = False


class Rental(_Record):
    id: str
    customer_id: str
    gear_id: str
    start_date: dt.date
    end_date: dt.date
    status: RentalStatus
    total: int
    points_applied: bool = False
    refund: int = 0


class OutfitterDB(_Record):
    today: dt.date
    customers: dict[str, Customer]
    gear: dict[str, Gear]
    rentals: dict[str, Rental]


# The fixed catalog: (id, name, category, daily rate, gold only). Units are drawn per seed.
CATALOG = [
    ("G10", "Alpine 2P Tent", "tent", 25, False),
    ("G11", "Summit 4P Tent", "tent", 40, False),
    ("G12", "Ridge Ultralight Tent", "tent", 55, True),
    ("G20", "Cozy Down Bag", "sleeping_bag", 10, False),
    ("G21", "Arctic Expedition Bag", "sleeping_bag", 20, True),
    ("G30", "Trail 40L Pack", "backpack", 8, False),
    ("G31", "Expedition 70L Pack", "backpack", 15, False),
    ("G40", "Pocket Stove", "stove", 5, False),
    ("G41", "Basecamp Stove", "stove", 12, False),
    ("G50", "River Kayak", "kayak", 45, False),
    ("G51", "Sea Kayak Pro", "kayak", 70, True),
    ("G60", "Gravel Bike", "bike", 35, False),
    ("G61", "Carbon Mountain Bike", "bike", 60, True),
]
CATEGORIES = sorted({c for _, _, c, _, _ in CATALOG})

FIRST_NAMES = [
    "Ana",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Wes",
    "Yara",
    "Zoe",
]
LAST_NAMES = [
    "Lopez",
    "Smith",
    "Khan",
    "Novak",
    "Berg",
    "Rossi",
    "Okafor",
    "Tanaka",
    "Silva",
    "Meyer",
    "Dubois",
    "Hansen",
    "Park",
    "Moreau",
    "Costa",
    "Ward",
    "Ivanova",
    "Reyes",
]
CITIES = [
    ("Boulder", "80302"),
    ("Denver", "80205"),
    ("Bend", "97701"),
    ("Moab", "84532"),
    ("Flagstaff", "86001"),
    ("Missoula", "59801"),
    ("Asheville", "28801"),
    ("Truckee", "96161"),
]
STREETS = ["Oak St", "Pine Ave", "Cedar Rd", "Maple Ln", "Aspen Way", "Birch Ct", "Elm Dr"]


def rental_days(start: dt.date, end: dt.date) -> int:
    """Days billed: the end date is the return day, so 06-12 → 06-14 is 2 days."""
    return (end - start).days


def random_person(rng: random.Random, cid: str) -> Customer:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city, zip_code = rng.choice(CITIES)
    return Customer(
        id=cid,
        first_name=first,
        last_name=last,
        email=f"{first.lower()}.{last.lower()}{cid[1:]}@mail.com",
        address=Address(
            street=f"{rng.randint(1, 99)} {rng.choice(STREETS)}", city=city, zip=zip_code
        ),
        tier=rng.choice(["basic", "basic", "silver", "gold"]),
        card_last4=f"{rng.randint(1000, 9999)}",
        points=rng.choice([0, 40, 120, 250, 400]),
    )


def make_base_db(seed: int = 0, n_customers: int = 40) -> OutfitterDB:
    if not 0 <= n_customers <= 100:
        raise ValueError(f"n_customers must be in [0, 100] (ids C100..C199), got {n_customers}")
    """The shared snapshot every task starts from: catalog, customers C100.., rentals R2000.."""
    rng = random.Random(f"outfitter-base-{seed}")
    gear = {
        gid: Gear(
            id=gid,
            name=name,
            category=cat,
            daily_rate=rate,
            units=rng.randint(2, 4),
            gold_only=gold,
        )
        for gid, name, cat, rate, gold in CATALOG
    }
    customers: dict[str, Customer] = {}
    rentals: dict[str, Rental] = {}
    for i in range(n_customers):
        c = random_person(rng, f"C{100 + i}")
        customers[c.id] = c
        for _ in range(rng.randint(0, 2)):
            g = gear[rng.choice(sorted(gear))]
            status = rng.choice(["returned", "active", "reserved", "cancelled"])
            offset = {"returned": -20, "active": -2, "reserved": 5, "cancelled": 3}[status]
            start = TODAY + dt.timedelta(days=offset + rng.randint(0, 6))
            end = start + dt.timedelta(days=rng.randint(1, 5))
            rid = f"R{2000 + len(rentals)}"
            rentals[rid] = Rental(
                id=rid,
                customer_id=c.id,
                gear_id=g.id,
                start_date=start,
                end_date=end,
                status=status,
                total=g.daily_rate * rental_days(start, end),
            )
    return OutfitterDB(today=TODAY, customers=customers, gear=gear, rentals=rentals)
