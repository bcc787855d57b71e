"""What outfitter customers say: the utterance templates of the task generator.

Why a few fixed phrasings per request: a tiny model must learn to read requests from a few
hundred dialogues, so the language varies a little (two or three templates each, distractor
sentences) but stays regular. Every request sentence carries all the details it needs (ids,
dates, gear name), so a request never needs a follow-up question.
"""

from __future__ import annotations

import random

REQUEST_TEMPLATES: dict[str, list[str]] = {
    "cancel": [
        "Please cancel my rental {rental_id}.",
        "I need to cancel rental {rental_id}.",
        "Can you cancel my reservation {rental_id}?",
    ],
    "modify": [
        "Please change the dates of rental {rental_id} to {start} through {end}.",
        "Can you move my rental {rental_id} to {start} until {end}?",
    ],
    "create": [
        "I'd like to rent the {gear} from {start} to {end}.",
        "Can I book the {gear} from {start} until {end}?",
    ],
    "address": [
        "Please update my address to {street}, {city} {zip}.",
        "I have a new address: {street}, {city} {zip}. Please update it.",
    ],
    "card": [
        "Please switch my card on file to the one ending in {card_last4}.",
        "I have a new card ending in {card_last4}, please put it on my account.",
    ],
    "redeem": [
        "Can I use my loyalty points on rental {rental_id}?",
        "Please apply my points to rental {rental_id}.",
    ],
    "transfer": [
        "The {gear} I rented came back damaged and I need to file a damage claim.",
        "I lost the {gear} from my last trip and need to report it.",
    ],
}

IDENTITY_TEMPLATES = {
    "email": ["My email is {email}.", "You can find me under {email}."],
    "name_zip": [
        "I'm {first_name} {last_name}, zip code {zip}.",
        "My name is {first_name} {last_name} and my zip code is {zip}.",
    ],
}

GREETINGS = ["Hi!", "Hello.", "Hi there.", "Good morning."]
CHATTER = [
    "We're planning a trip with friends soon.",
    "I'm heading to the mountains next month.",
    "My kids love camping.",
]
PAST_RENTAL = [
    "By the way, my last rental {rental_id} went great.",
    "I already returned {rental_id} last month, no issue there.",
]

CONFIRM_YES = ["Yes, please go ahead.", "Yes, that's right.", "Yes please."]
CONFIRM_NO = ["No, please leave it as it is.", "Actually no, don't change anything."]
THANKS_STOP = "Thanks, that's all. ###STOP###"
STOP = "###STOP###"

# What the user tells the simulator it wants, per request kind (for instructions text).
GOAL_TEXT = {
    "cancel": "cancel rental {rental_id}",
    "modify": "move rental {rental_id} to {start} - {end}",
    "create": "rent the {gear} from {start} to {end}",
    "address": "change your address to {street}, {city} {zip}",
    "card": "replace your card with the one ending in {card_last4}",
    "redeem": "use loyalty points on rental {rental_id}",
    "transfer": "report that the {gear} was damaged or lost",
}


def pick(rng: random.Random, options: list[str], **values: object) -> str:
    return rng.choice(options).format(**values)
