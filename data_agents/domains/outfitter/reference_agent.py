"""The outfitter domain's REFERENCE SOLVER, agent side: a programmatic, policy-following agent.

Used for the offline quickstart (reference dialogues to SFT a tiny model) and for tests; the LLM
agent path lives elsewhere. It reads only the dialogue so far and the tool results — never the
task or its gold actions — and recomputes its next step from the messages on every call, so it is
stateless and can take over any dialogue. It handles one request at a time: verify identity,
read what the policy needs, refuse or ask for confirmation, write, report, ask for anything else.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from data_agents.domains.outfitter.db import MAX_RENTAL_DAYS, OPEN_RENTAL_LIMIT, TODAY

INTENTS = [
    ("transfer", r"\b(damaged?|lost)\b"),
    ("address", r"\baddress\b"),
    ("card", r"\bcard\b"),
    ("redeem", r"\bpoints\b"),
    ("cancel", r"\bcancel\b"),
    ("modify", r"\b(change the dates|move my rental)\b"),
    ("create", r"\b(rent|book)\b"),
]
CATEGORY_WORDS = {
    "tent": "tent",
    "bag": "sleeping_bag",
    "pack": "backpack",
    "stove": "stove",
    "kayak": "kayak",
    "bike": "bike",
}
WRITE_TOOLS = {
    "cancel": "cancel_rental",
    "modify": "modify_rental_dates",
    "create": "create_rental",
    "address": "update_address",
    "card": "update_payment_card",
    "redeem": "redeem_points",
}
ANYTHING_ELSE = "Is there anything else I can help you with?"
ASK_IDENTITY = (
    "Before I can help, I need to verify your identity. Could you give me your "
    "email, or your full name and zip code?"
)
NOT_FOUND = (
    "I couldn't find an account with those details. Could you check your email, or give "
    "your full name and zip code?"
)
RE_RENTAL, RE_DATE = re.compile(r"\bR\d{4}\b"), re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
RE_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
RE_NAME = re.compile(r"(?:I'm|I am|name is) ([A-Z][a-z]+) ([A-Z][a-z]+)")
RE_ZIP = re.compile(r"zip code(?: is)? (\d{5})")
RE_ADDRESS = re.compile(r"(\d+ [A-Z][a-z]+ [A-Z][a-z]+), ([A-Z][a-z]+) (\d{5})")
RE_CARD = re.compile(r"ending in (\d{4})")
RE_YES = re.compile(r"\b(yes|yeah|sure|go ahead|please do)\b", re.IGNORECASE)
RE_NO = re.compile(r"\b(no|don't|do not|never mind)\b", re.IGNORECASE)


def parse_request(text: str) -> dict[str, Any] | None:
    """The first request in a user message: kind plus the details in the same sentence."""
    for sentence in re.split(r"(?<=[.?!])\s+", text):
        for kind, pattern in INTENTS:
            if re.search(pattern, sentence, re.IGNORECASE):
                req: dict[str, Any] = {"kind": kind, "text": sentence}
                if m := RE_RENTAL.search(sentence):
                    req["rental_id"] = m.group()
                dates = RE_DATE.findall(sentence)
                if len(dates) >= 2:
                    req["start"], req["end"] = dates[:2]
                if m := RE_ADDRESS.search(sentence):
                    req["street"], req["city"], req["zip"] = m.groups()
                if m := RE_CARD.search(sentence):
                    req["card_last4"] = m.group(1)
                words = re.findall(r"[a-z]+", sentence.lower())
                req["category"] = next(
                    (CATEGORY_WORDS[w] for w in words if w in CATEGORY_WORDS), None
                )
                return req
    return None


def parse_identity(texts: list[str]) -> tuple[str, dict[str, str]] | None:
    """The most recent identity the user gave: (tool name, arguments)."""
    for text in reversed(texts):
        if m := RE_EMAIL.search(text):
            return "find_customer_by_email", {"email": m.group()}
        name, zip_code = RE_NAME.search(text), RE_ZIP.search(text)
        if name and zip_code:
            return "find_customer_by_name_zip", {
                "first_name": name.group(1),
                "last_name": name.group(2),
                "zip": zip_code.group(1),
            }
    return None


def _tool_events(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each tool call with its position, arguments and parsed result (None on error)."""
    results = {m.get("tool_call_id"): m.get("content", "") for m in messages if m["role"] == "tool"}
    events = []
    for i, m in enumerate(messages):
        for call in m.get("tool_calls") or []:
            text = results.get(call["id"])
            value = None
            if text is not None and not text.startswith("Error"):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    value = text
            events.append(
                {
                    "index": i,
                    "name": call["name"],
                    "arguments": call["arguments"],
                    "result": value,
                    "text": text,
                }
            )
    return events


class ReferenceAgent:
    """Policy-following programmatic agent (reference solver); see the module docstring."""

    def __init__(self, domain: Any = None) -> None:
        self.domain = domain  # kept for symmetry with LLM agents; the policy is built in

    def act(
        self, messages: list[dict[str, Any]], env_tools_schema: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        self._messages, self._events = messages, _tool_events(messages)
        user_at = [i for i, m in enumerate(messages) if m["role"] == "user"]
        if not user_at:
            return self._say("Hello! How can I help you today?")
        customer_id = self._verified_customer()
        if customer_id is None:
            identity = parse_identity([messages[i]["content"] for i in user_at])
            tried = [e for e in self._events if e["name"].startswith("find_customer")]
            if identity and not any((e["name"], e["arguments"]) == identity for e in tried):
                return self._call(*identity)
            return self._say(NOT_FOUND if tried else ASK_IDENTITY)
        request_at = next(
            (i for i in reversed(user_at) if parse_request(messages[i]["content"])), None
        )
        if request_at is None:
            return self._say("Thank you, you are verified. How can I help you today?")
        request = parse_request(messages[request_at]["content"])
        return self._handle(request, customer_id, request_at)

    # -- helpers ------------------------------------------------------------------------------
    def _say(self, text: str) -> dict[str, Any]:
        return {"role": "assistant", "content": text}

    def _call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        n = sum(len(m.get("tool_calls") or []) for m in self._messages)
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": f"call_{n}", "name": name, "arguments": arguments}],
        }

    def _verified_customer(self) -> str | None:
        found = [
            e
            for e in self._events
            if e["name"].startswith("find_customer") and isinstance(e["result"], dict)
        ]
        return found[-1]["result"]["customer_id"] if found else None

    def _result(self, name: str, arguments: dict[str, Any], since: int) -> tuple[bool, Any]:
        """(called?, result) of the latest matching call after message `since`."""
        hits = [
            e
            for e in self._events
            if e["index"] > since and e["name"] == name and e["arguments"] == arguments
        ]
        return (True, hits[-1]) if hits else (False, None)

    def _said_after(self, text: str, since: int) -> int | None:
        hits = [
            i
            for i, m in enumerate(self._messages)
            if i > since and m["role"] == "assistant" and m.get("content") == text
        ]
        return hits[-1] if hits else None

    # -- one request ----------------------------------------------------------------------------
    def _handle(self, req: dict[str, Any], customer_id: str, since: int) -> dict[str, Any]:
        if req["kind"] == "transfer":
            called, _ = self._result("transfer_to_human_agents", {"summary": req["text"]}, since)
            if not called:
                return self._call("transfer_to_human_agents", {"summary": req["text"]})
            return self._say(
                "I have transferred you to a human agent, who will handle your report."
            )
        reads: dict[str, Any] = {}
        for name, args in self._reads(req, customer_id, reads, since):
            called, event = self._result(name, args, since)
            if not called:
                return self._call(name, args)
            if event["result"] is None:
                return self._finish(
                    f"I'm sorry, I could not look that up: "
                    f"{event['text'].removeprefix('Error: ')}.",
                    since,
                )
            reads[name] = event["result"]
        decision = self._decide(req, customer_id, reads)
        if isinstance(decision, str):
            return self._finish(decision, since)
        confirm_text, write_args = decision
        asked = self._said_after(confirm_text, since)
        if asked is None:
            return self._say(confirm_text)
        answers = [m["content"] for m in self._messages[asked + 1 :] if m["role"] == "user"]
        if not answers or not (RE_YES.search(answers[-1]) or RE_NO.search(answers[-1])):
            return self._say(confirm_text)
        if RE_NO.search(answers[-1]) and not RE_YES.search(answers[-1]):
            return self._finish("Okay, I have not made any change.", since)
        write = WRITE_TOOLS[req["kind"]]
        called, event = self._result(write, write_args, asked)
        if not called:
            return self._call(write, write_args)
        if event["result"] is None:
            return self._finish(
                f"I'm sorry, that did not work: {event['text'].removeprefix('Error: ')}.", since
            )
        return self._finish(_done_text(req["kind"], event["result"]), since)

    def _finish(self, text: str, since: int) -> dict[str, Any]:
        full = f"{text} {ANYTHING_ELSE}"
        return self._say(ANYTHING_ELSE if self._said_after(full, since) is not None else full)

    def _reads(self, req: dict[str, Any], customer_id: str, reads: dict[str, Any], since: int):
        """The look-ups the policy needs, in order (later ones may depend on earlier results)."""
        kind = req["kind"]
        if kind in ("cancel", "modify", "redeem") and "rental_id" in req:
            yield "get_rental", {"rental_id": req["rental_id"]}
        if kind in ("redeem", "create"):
            yield "get_customer", {"customer_id": customer_id}
        if kind == "create" and req.get("category") and "start" in req:
            yield "search_gear", {"category": req["category"]}
            gear = _match_gear(req["text"], reads.get("search_gear") or [])
            if gear is not None:
                yield (
                    "check_availability",
                    {
                        "gear_id": gear["gear_id"],
                        "start_date": req["start"],
                        "end_date": req["end"],
                    },
                )

    def _decide(
        self, req: dict[str, Any], customer_id: str, reads: dict[str, Any]
    ) -> str | tuple[str, dict[str, Any]]:
        """A refusal text, or (confirmation question, write arguments)."""
        kind, ask = req["kind"], "Shall I proceed? (yes/no)"
        missing = {
            "cancel": ["rental_id"],
            "redeem": ["rental_id"],
            "address": ["street"],
            "modify": ["rental_id", "start"],
            "create": ["category", "start"],
            "card": ["card_last4"],
        }[kind]
        if any(k not in req for k in missing) or (kind == "create" and not req["category"]):
            return "I'm sorry, I could not understand all the details of that request."
        rental = reads.get("get_rental")
        if rental is not None:
            rid = rental["rental_id"]
            if rental["customer_id"] != customer_id:
                return f"I'm sorry, rental {rid} is not on your account, so I cannot change it."
            if rental["status"] != "reserved":
                return (
                    f"I'm sorry, rental {rid} is {rental['status']}; only reserved rentals "
                    "can be changed."
                )
        if kind in ("modify", "create") and (problem := _date_problem(req["start"], req["end"])):
            return problem
        if kind == "cancel":
            return (
                (
                    f"I will cancel rental {rid} ({rental['gear']}, {rental['start']} to "
                    f"{rental['end']}). {ask}"
                ),
                {"rental_id": rid},
            )
        if kind == "modify":
            return (
                f"I will move rental {rid} to {req['start']} - {req['end']}. {ask}",
                {"rental_id": rid, "start_date": req["start"], "end_date": req["end"]},
            )
        if kind == "redeem":
            points = reads["get_customer"]["points"]
            if rental["points_applied"]:
                return f"I'm sorry, points were already applied to rental {rid}."
            if points < 100:
                return f"I'm sorry, you have {points} points; a discount needs 100 points."
            return (f"I will use 100 points for $10 off rental {rid}. {ask}", {"rental_id": rid})
        if kind == "address":
            address = f"{req['street']}, {req['city']} {req['zip']}"
            return (
                f"I will change your address to {address}. {ask}",
                {
                    "customer_id": customer_id,
                    "street": req["street"],
                    "city": req["city"],
                    "zip": req["zip"],
                },
            )
        if kind == "card":
            return (
                f"I will replace your card with the one ending in {req['card_last4']}. {ask}",
                {"customer_id": customer_id, "card_last4": req["card_last4"]},
            )
        gear = _match_gear(req["text"], reads.get("search_gear") or [])
        if gear is None:
            return "I'm sorry, I could not find that gear in our catalog."
        customer = reads["get_customer"]
        if gear["gold_only"] and customer["tier"] != "gold":
            return f"I'm sorry, the {gear['name']} is for gold members only."
        limit = OPEN_RENTAL_LIMIT[customer["tier"]]
        if len(customer["open_rentals"]) >= limit:
            return (
                f"I'm sorry, you already have {len(customer['open_rentals'])} open rentals, "
                f"the limit for {customer['tier']} members."
            )
        if reads["check_availability"]["available"] < 1:
            return (
                f"I'm sorry, the {gear['name']} is not available from {req['start']} to "
                f"{req['end']}."
            )
        days = (dt.date.fromisoformat(req["end"]) - dt.date.fromisoformat(req["start"])).days
        return (
            (
                f"I can reserve the {gear['name']} ({gear['gear_id']}) from {req['start']} to "
                f"{req['end']} for ${gear['daily_rate'] * days}. {ask}"
            ),
            {
                "customer_id": customer_id,
                "gear_id": gear["gear_id"],
                "start_date": req["start"],
                "end_date": req["end"],
            },
        )


def _match_gear(text: str, items: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((g for g in items if g["name"].lower() in text.lower()), None)


def _date_problem(start: str, end: str) -> str | None:
    try:
        s, e = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError:
        return "I'm sorry, those dates are not valid."
    if s < TODAY:
        return f"I'm sorry, a rental cannot start in the past (today is {TODAY})."
    if not 1 <= (e - s).days <= MAX_RENTAL_DAYS:
        return f"I'm sorry, a rental must last 1 to {MAX_RENTAL_DAYS} days."
    return None


def _done_text(kind: str, r: dict[str, Any]) -> str:
    if kind == "cancel":
        return f"Rental {r['rental_id']} is cancelled; you will get a refund of ${r['refund']}."
    if kind in ("modify", "create"):
        verb = "now runs" if kind == "modify" else "is reserved"
        return (
            f"Rental {r['rental_id']} ({r['gear']}) {verb} from {r['start']} to {r['end']}; "
            f"the total is ${r['total']}."
        )
    if kind == "address":
        return f"Your address is now {r['address']}."
    if kind == "card":
        return f"Your card on file now ends in {r['card_last4']}."
    return f"Points applied: rental {r['rental_id']} now costs ${r['total']}."
