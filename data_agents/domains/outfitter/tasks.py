"""Seeded procedural generator of outfitter tasks (tau2 format) with gold actions.

Why: the paper's pipeline synthesises tasks with an LLM; the offline quickstart and the tests
need tasks without one. Each task adds a fresh customer (plus the rentals its requests need) to
the shared base snapshot via `initial_state.initialization_data.agent_data`, then lists 1-5
requests. A request either succeeds (one write), is declined by the user at confirmation, is a
policy refusal (the correct outcome is no change), or is a transfer to a human.

The generator computes the intended database change itself (`description["expected_changes"]`:
leaf path → final value, with its own arithmetic, not the tools'), so tests can check that
replaying the gold actions through the tools changes the database exactly as intended.
`description["user_script"]` is the structured script the reference user simulator follows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

from data_agents.domains.outfitter.db import (
    CATALOG,
    CITIES,
    FULL_REFUND_DAYS,
    OPEN_RENTAL_LIMIT,
    POINTS_PER_REDEMPTION,
    REDEMPTION_DOLLARS,
    STREETS,
    TODAY,
    OutfitterDB,
    random_person,
)
from data_agents.domains.outfitter.scenario import build_scenario
from data_agents.domains.task import (
    Action,
    EvaluationCriteria,
    InitializationData,
    InitialState,
    Task,
)

DIFFICULTIES = {"easy": (1,), "medium": (2,), "hard": (3,), "expert": (4, 5)}
DIFFICULTY_WEIGHTS = {"easy": 0.3, "medium": 0.3, "hard": 0.25, "expert": 0.15}
WRITES = ["cancel", "modify", "create", "address", "card", "redeem"]
# (kind, reason) pairs whose correct outcome is a refusal and no change.
REFUSALS = [
    ("cancel", "active"),
    ("modify", "active"),
    ("cancel", "other_customer"),
    ("redeem", "active"),
    ("redeem", "no_points"),
    ("create", "over_limit"),
    ("create", "gold_only"),
    ("create", "unavailable"),
    ("create", "too_long"),
]
_GEAR = {gid: (name, cat, rate, gold) for gid, name, cat, rate, gold in CATALOG}


@dataclasses.dataclass
class _Request:
    kind: str
    refusal: str | None = None
    confirm: bool = True
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def outcome(self) -> str:
        if self.kind == "transfer":
            return "transfer"
        return "refuse" if self.refusal else ("write" if self.confirm else "decline")


class _Builder:
    """Builds one task: sets up the world its requests need, then simulates the outcomes."""

    def __init__(self, base: OutfitterDB, rng: random.Random, reqs: list[_Request]):
        self.base, self.rng, self.reqs = base, rng, reqs
        cid = f"C{rng.randint(200, 999)}"  # base customers are C100..C199
        taken = {(c.first_name, c.last_name, c.address.zip) for c in base.customers.values()}
        self.cust = random_person(rng, cid)
        while (self.cust.first_name, self.cust.last_name, self.cust.address.zip) in taken:
            self.cust = random_person(rng, cid)  # identity must pick out exactly one customer
        self.customers: dict[str, dict[str, Any]] = {}
        self.rentals: dict[str, dict[str, Any]] = {}  # task-added rentals, JSON form
        self.next_rid = rng.randint(30, 90) * 100
        self.twin: str | None = None  # a lookalike customer: same name, other zip
        self.past_rental: str | None = None  # a returned rental the user mentions in passing

    # -- world set-up ---------------------------------------------------------------------------
    def _new_rental(self, cid: str, gear_id: str, start: dt.date, end: dt.date, status: str) -> str:
        rid = f"R{self.next_rid}"
        self.next_rid += self.rng.randint(1, 7)
        self.rentals[rid] = {
            "id": rid,
            "customer_id": cid,
            "gear_id": gear_id,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "status": status,
            "total": _GEAR[gear_id][2] * (end - start).days,
            "points_applied": False,
            "refund": 0,
        }
        return rid

    def _gear_for_tier(self, gold_only: bool | None = None) -> str:
        ok = [
            g
            for g, (_, _, _, gold) in _GEAR.items()
            if (gold_only is None and (not gold or self.cust.tier == "gold"))
            or (gold_only is not None and gold == gold_only)
        ]
        return self.rng.choice(ok)

    def _reserved(self, soon: bool = False) -> str:
        start = TODAY + dt.timedelta(
            days=self.rng.randint(1, 6) if soon else self.rng.randint(1, 20)
        )
        end = start + dt.timedelta(days=self.rng.randint(1, 5))
        return self._new_rental(self.cust.id, self._gear_for_tier(), start, end, "reserved")

    def _active(self) -> str:
        start = TODAY - dt.timedelta(days=self.rng.randint(1, 4))
        end = TODAY + dt.timedelta(days=self.rng.randint(1, 5))
        return self._new_rental(self.cust.id, self._gear_for_tier(), start, end, "active")

    def setup(self) -> bool:
        """Create the rentals each request needs; False when the combination cannot be set up."""
        kinds = [(r.kind, r.refusal) for r in self.reqs]
        redeems = sum(1 for k in kinds if k == ("redeem", None))
        if redeems and ("redeem", "no_points") in kinds:
            return False
        if ("create", "gold_only") in kinds:
            self.cust.tier = self.rng.choice(["basic", "silver"])
        self.cust.points = (
            POINTS_PER_REDEMPTION * redeems + self.rng.choice([0, 30, 150])
            if redeems
            else self.rng.choice([0, 40, 60, 150, 300])
        )
        if ("redeem", "no_points") in kinds:
            self.cust.points = self.rng.choice([0, 40, 60])
        for r in self.reqs:
            p = r.params
            if r.kind in ("cancel", "modify", "redeem"):
                if r.refusal == "other_customer":
                    p["rental_id"] = self._other_customers_rental()
                else:
                    p["rental_id"] = (
                        self._active()
                        if r.refusal == "active"
                        else self._reserved(soon=r.kind == "cancel")
                    )
            if r.kind == "modify":
                p.update(self._new_dates(p["rental_id"]))
            elif r.kind == "address":
                city, zip_code = self.rng.choice(
                    [c for c in CITIES if c[1] != self.cust.address.zip]
                )
                p.update(
                    street=f"{self.rng.randint(100, 999)} {self.rng.choice(STREETS)}",
                    city=city,
                    zip=zip_code,
                )
            elif r.kind == "card":
                p["card_last4"] = f"{self.rng.randint(1000, 9999)}"
            elif r.kind == "transfer":
                p["gear"] = _GEAR[self._gear_for_tier()][0]
        if self.rng.random() < 0.35:
            start = TODAY - dt.timedelta(days=self.rng.randint(20, 40))
            self.past_rental = self._new_rental(
                self.cust.id, self._gear_for_tier(), start, start + dt.timedelta(days=2), "returned"
            )
        if self.rng.random() < 0.3:
            twin = random_person(self.rng, f"C{int(self.cust.id[1:]) + 1000}")
            twin.first_name, twin.last_name = self.cust.first_name, self.cust.last_name
            if twin.address.zip != self.cust.address.zip:
                self.twin = twin.id
                self.customers[twin.id] = twin.model_dump(mode="json")
        if not (self._setup_creates() and self._dates_available()):
            return False
        self.customers[self.cust.id] = self.cust.model_dump(mode="json")
        return True

    def _other_customers_rental(self) -> str:
        other = self.rng.choice(sorted(self.base.customers))
        start = TODAY + dt.timedelta(days=self.rng.randint(3, 15))
        return self._new_rental(
            other, self._gear_for_tier(False), start, start + dt.timedelta(days=2), "reserved"
        )

    def _new_dates(self, rid: str) -> dict[str, str]:
        old = self.rentals[rid]
        while True:
            start = TODAY + dt.timedelta(days=self.rng.randint(3, 25))
            end = start + dt.timedelta(days=self.rng.randint(1, 6))
            if (
                start.isoformat() != old["start_date"]
                and self._free(old["gear_id"], start, end, exclude=rid) >= 1
            ):
                return {"start": start.isoformat(), "end": end.isoformat()}

    def _free(self, gear_id: str, start: dt.date, end: dt.date, exclude: str | None = None) -> int:
        """Free units, counted over the base and task rentals (the generator's own bookkeeping)."""
        rows = [r.model_dump(mode="json") for r in self.base.rentals.values()]
        rows += list(self.rentals.values())
        busy = sum(
            1
            for r in rows
            if r["gear_id"] == gear_id
            and r["id"] != exclude
            and r["status"] in ("reserved", "active")
            and dt.date.fromisoformat(r["start_date"]) < end
            and start < dt.date.fromisoformat(r["end_date"])
        )
        return self.base.gear[gear_id].units - busy

    def _setup_creates(self) -> bool:
        limit = OPEN_RENTAL_LIMIT[self.cust.tier]
        for r in self.reqs:
            if r.kind != "create":
                continue
            gold_only = True if r.refusal == "gold_only" else None
            days = self.rng.randint(15, 20) if r.refusal == "too_long" else self.rng.randint(1, 7)
            start = TODAY + dt.timedelta(days=self.rng.randint(2, 25))
            end = start + dt.timedelta(days=days)
            gear_id = self._gear_for_tier(gold_only)
            if r.refusal == "unavailable":
                for _ in range(self._free(gear_id, start, end)):  # book out the free units
                    self._new_rental(
                        self.rng.choice(sorted(self.base.customers)),
                        gear_id,
                        start,
                        end,
                        "reserved",
                    )
            r.params.update(
                gear_id=gear_id,
                gear=_GEAR[gear_id][0],
                start=start.isoformat(),
                end=end.isoformat(),
            )
        # Open-rental limit: add filler reservations so every create sees the intended count.
        for fillers in range(limit + 1):
            if self._limits_hold(limit, fillers):
                for _ in range(fillers):
                    self._reserved()
                return True
        return False

    def _limits_hold(self, limit: int, fillers: int) -> bool:
        open_now = fillers + sum(
            1
            for r in self.rentals.values()
            if r["customer_id"] == self.cust.id and r["status"] in ("reserved", "active")
        )
        for r in self.reqs:
            if r.kind == "create" and (open_now >= limit) != (r.refusal == "over_limit"):
                return False
            if r.outcome == "write" and r.kind == "create":
                open_now += 1
            if r.outcome == "write" and r.kind == "cancel":
                open_now -= 1
        return True

    def _dates_available(self) -> bool:
        """Every create/modify that should succeed finds a free unit (conservatively: earlier
        successful writes on the same gear are assumed to hold one more unit each)."""
        for i, r in enumerate(self.reqs):
            if r.kind not in ("create", "modify") or r.refusal in (
                "unavailable",
                "active",
                "other_customer",
            ):
                continue
            rid = r.params.get("rental_id")
            gear_id = r.params["gear_id"] if r.kind == "create" else self.rentals[rid]["gear_id"]
            earlier = sum(
                1
                for q in self.reqs[:i]
                if q.outcome == "write"
                and q.kind in ("create", "modify")
                and self._gear_of(q) == gear_id
            )
            s, e = dt.date.fromisoformat(r.params["start"]), dt.date.fromisoformat(r.params["end"])
            if self._free(gear_id, s, e, exclude=rid) - earlier < 1:
                return False
        return True

    def _gear_of(self, r: _Request) -> str:
        return (
            r.params["gear_id"]
            if r.kind == "create"
            else self.rentals[r.params["rental_id"]]["gear_id"]
        )

    # -- outcome simulation ---------------------------------------------------------------------
    def simulate(self) -> tuple[list[Action], dict[str, Any], list[str]]:
        """Gold actions, expected leaf changes and facts to communicate, request by request."""
        actions: list[Action] = []
        changes: dict[str, Any] = {}
        facts: list[str] = []
        cust = self.cust.model_copy(deep=True)
        rentals = {k: dict(v) for k, v in self.rentals.items()}
        next_id = max(int(x[1:]) for x in list(self.base.rentals) + list(self.rentals)) + 1
        for r in self.reqs:
            p = r.params
            if r.outcome == "transfer":
                actions.append(
                    Action(
                        action_id=f"a{len(actions)}",
                        name="transfer_to_human_agents",
                        arguments={"summary": f"damage or loss report: {p['gear']}"},
                        compare_args=[],
                    )
                )
            if r.outcome != "write":
                continue
            cpath, act = f"customers/{cust.id}", None
            if r.kind == "cancel":
                row = rentals[p["rental_id"]]
                days_ahead = (dt.date.fromisoformat(row["start_date"]) - TODAY).days
                full = cust.tier == "gold" or days_ahead >= FULL_REFUND_DAYS
                row.update(status="cancelled", refund=row["total"] if full else row["total"] // 2)
                facts.append(f"${row['refund']}")
                act = ("cancel_rental", {"rental_id": p["rental_id"]})
            elif r.kind == "modify":
                row = rentals[p["rental_id"]]
                days = (dt.date.fromisoformat(p["end"]) - dt.date.fromisoformat(p["start"])).days
                row.update(
                    start_date=p["start"],
                    end_date=p["end"],
                    total=_GEAR[row["gear_id"]][2] * days
                    - (REDEMPTION_DOLLARS if row["points_applied"] else 0),
                )
                act = (
                    "modify_rental_dates",
                    {"rental_id": p["rental_id"], "start_date": p["start"], "end_date": p["end"]},
                )
            elif r.kind == "redeem":
                row = rentals[p["rental_id"]]
                row.update(total=row["total"] - REDEMPTION_DOLLARS, points_applied=True)
                cust.points -= POINTS_PER_REDEMPTION
                changes[f"{cpath}/points"] = cust.points
                act = ("redeem_points", {"rental_id": p["rental_id"]})
            elif r.kind == "create":
                rid = f"R{next_id}"
                next_id += 1
                days = (dt.date.fromisoformat(p["end"]) - dt.date.fromisoformat(p["start"])).days
                rentals[rid] = {
                    "id": rid,
                    "customer_id": cust.id,
                    "gear_id": p["gear_id"],
                    "start_date": p["start"],
                    "end_date": p["end"],
                    "status": "reserved",
                    "total": _GEAR[p["gear_id"]][2] * days,
                    "points_applied": False,
                    "refund": 0,
                }
                act = (
                    "create_rental",
                    {
                        "customer_id": cust.id,
                        "gear_id": p["gear_id"],
                        "start_date": p["start"],
                        "end_date": p["end"],
                    },
                )
            elif r.kind == "address":
                for key in ("street", "city", "zip"):
                    changes[f"{cpath}/address/{key}"] = p[key]
                act = (
                    "update_address",
                    {
                        "customer_id": cust.id,
                        "street": p["street"],
                        "city": p["city"],
                        "zip": p["zip"],
                    },
                )
            elif r.kind == "card":
                changes[f"{cpath}/card_last4"] = p["card_last4"]
                act = (
                    "update_payment_card",
                    {"customer_id": cust.id, "card_last4": p["card_last4"]},
                )
            actions.append(Action(action_id=f"a{len(actions)}", name=act[0], arguments=act[1]))
        for rid, row in rentals.items():
            for key, value in row.items():
                if self.rentals.get(rid, {}).get(key, object()) != value:
                    changes[f"rentals/{rid}/{key}"] = value
        return actions, changes, facts


def _sample_requests(rng: random.Random, n: int) -> list[_Request]:
    reqs = []
    for i in range(n):
        u = rng.random()
        if u < 0.05 and i == n - 1:
            reqs.append(_Request("transfer"))
        elif u < 0.35:
            kind, reason = rng.choice(REFUSALS)
            reqs.append(_Request(kind, refusal=reason))
        else:
            reqs.append(_Request(rng.choice(WRITES), confirm=rng.random() > 0.12))
    return reqs


def generate_task(base: OutfitterDB, split: str, index: int, seed: int = 0) -> Task:
    """The deterministic task `index` of `split` (retries set-up until the requests fit)."""
    for attempt in range(100):
        rng = random.Random(f"outfitter-task-{seed}-{split}-{index}-{attempt}")
        difficulty = rng.choices(list(DIFFICULTY_WEIGHTS), list(DIFFICULTY_WEIGHTS.values()))[0]
        reqs = _sample_requests(rng, rng.choice(DIFFICULTIES[difficulty]))
        builder = _Builder(base, rng, reqs)
        if builder.setup():
            return _assemble(builder, rng, f"outfitter_{split}_{index:04d}", difficulty)
    raise RuntimeError(f"could not set up task {split}/{index}")  # pragma: no cover


def _assemble(b: _Builder, rng: random.Random, task_id: str, difficulty: str) -> Task:
    actions, changes, facts = b.simulate()
    scenario, script = build_scenario(b, rng)
    n_writes = sum(1 for r in b.reqs if r.outcome == "write")
    return Task(
        id=task_id,
        description={
            "purpose": "outfitter synthetic task",
            "difficulty": difficulty,
            "n_requests": len(b.reqs),
            "n_writes": n_writes,
            "outcomes": [f"{r.kind}:{r.refusal or r.outcome}" for r in b.reqs],
            "expected_changes": changes,
            "user_script": script,
        },
        user_scenario=scenario,
        initial_state=InitialState(
            initialization_data=InitializationData(
                agent_data={"customers": b.customers, "rentals": b.rentals}
            )
        ),
        evaluation_criteria=EvaluationCriteria(
            actions=actions,
            communicate_info=facts,
            reward_basis=["DB", "COMMUNICATE"] if facts else ["DB"],
        ),
    )


__all__ = ["DIFFICULTIES", "REFUSALS", "WRITES", "generate_task"]
