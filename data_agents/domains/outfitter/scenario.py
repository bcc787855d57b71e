"""The user side of a generated outfitter task: tau2 `UserScenario` text plus a structured script.

The instructions text is what an LLM user simulator reads; the structured script (identity,
opening line, one pre-rendered sentence per request, yes/no at confirmation) is what the
programmatic `ReferenceUser` follows. Both say the same thing.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from data_agents.domains.outfitter import texts
from data_agents.domains.task import StructuredUserInstructions, UserScenario

if TYPE_CHECKING:
    from data_agents.domains.outfitter.tasks import _Builder

PERSONAS = ["Friendly and brief.", "Polite, a little chatty.", "Direct and in a hurry."]


def build_scenario(b: _Builder, rng: random.Random) -> tuple[UserScenario, dict[str, Any]]:
    c = b.cust
    mode = "name_zip" if b.twin or rng.random() < 0.5 else "email"
    identity = (
        {"email": c.email}
        if mode == "email"
        else {"first_name": c.first_name, "last_name": c.last_name, "zip": c.address.zip}
    )
    identity_text = texts.pick(rng, texts.IDENTITY_TEMPLATES[mode], **identity)
    volunteer = rng.random() < 0.5
    opening = [rng.choice(texts.GREETINGS)]
    if rng.random() < 0.3:
        opening.append(rng.choice(texts.CHATTER))
    if b.past_rental:
        opening.append(texts.pick(rng, texts.PAST_RENTAL, rental_id=b.past_rental))
    if volunteer:
        opening.append(identity_text)
    requests = [
        {
            "kind": r.kind,
            "confirm": r.confirm,
            "text": texts.pick(rng, texts.REQUEST_TEMPLATES[r.kind], **r.params),
        }
        for r in b.reqs
    ]
    goals = [texts.GOAL_TEXT[r.kind].format(**r.params) for r in b.reqs]
    declined = [i + 1 for i, r in enumerate(b.reqs) if not r.confirm]
    confirm_rule = "When the agent asks you to confirm a change, say yes"
    if declined:
        confirm_rule += (
            f", except for request {', '.join(map(str, declined))}: there, change "
            "your mind and say no"
        )
    known = (
        f"Your email is {c.email}."
        if mode == "email"
        else f"Your name is {c.first_name} {c.last_name}; your zip code is {c.address.zip}."
    )
    instructions = StructuredUserInstructions(
        domain="outfitter",
        reason_for_call="You want to "
        + "; then ".join(f"({i + 1}) {g}" for i, g in enumerate(goals))
        + ".",
        known_info=known
        + (
            " You mention your past rental " + b.past_rental + " in passing."
            if b.past_rental
            else ""
        ),
        unknown_info=None,
        task_instructions=(
            "Make your requests one at a time, in order, moving to the next one once the agent "
            f"has dealt with the current one. {confirm_rule}. Give your identity when asked. If "
            "the agent refuses a request, accept it and move on. When everything is done, or the "
            f"conversation is going nowhere, end with {texts.STOP}."
        ),
    )
    script = {
        "identity": identity,
        "identity_text": identity_text,
        "volunteer_identity": volunteer,
        "opening": " ".join(opening),
        "requests": requests,
    }
    return UserScenario(persona=rng.choice(PERSONAS), instructions=instructions), script
