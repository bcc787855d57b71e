"""Test dialogues: two tools, parallel calls, tool results, a second user turn (tau2-like)."""

from __future__ import annotations

import copy
import json

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_user_details",
            "description": "Look a user up by id.",
            "parameters": {
                "type": "object",
                "properties": {"user_id": {"type": "string"}},
                "required": ["user_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "update_address",
            "description": "Change a user's address.",
            "parameters": {
                "type": "object",
                "properties": {"user_id": {"type": "string"}, "address": {"type": "object"}},
                "required": ["user_id", "address"],
            },
        },
    },
]

SYSTEM = "You are an airline agent. Follow the policy; never guess a user id."
DIALOGUE = [
    {"role": "system", "content": SYSTEM},
    {
        "role": "user",
        "content": "Hi, I'm mia_li_3668 and also booking for noah_8. Move both to Paris.",
    },
    {
        "role": "assistant",
        "content": "Let me look you both up.",
        "tool_calls": [
            {"id": "c1", "name": "get_user_details", "arguments": {"user_id": "mia_li_3668"}},
            {"id": "c2", "name": "get_user_details", "arguments": {"user_id": "noah_8"}},
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"name": "Mia Li", "city": "Lyon"}'},
    {"role": "tool", "tool_call_id": "c2", "content": '{"name": "Noah", "city": "Nice"}'},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c3",
                "name": "update_address",
                "arguments": {
                    "user_id": "mia_li_3668",
                    "address": {"city": "Paris", "zip": "75001"},
                },
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c3", "content": "Address updated for mia_li_3668."},
    {"role": "assistant", "content": "Done for Mia. Shall I also update Noah (zip 75002)?"},
    {"role": "user", "content": "Yes please, café near the Seine — ünïcödé ok."},
    {
        "role": "assistant",
        "content": "Updating now.",
        "tool_calls": [
            {
                "id": "c4",
                "name": "update_address",
                "arguments": {"user_id": "noah_8", "address": {"city": "Paris", "zip": "75002"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c4", "content": "Address updated for noah_8."},
    {"role": "assistant", "content": "Both addresses now point to Paris."},
]


def dialogue():
    return copy.deepcopy(DIALOGUE)


def hermes_text(message) -> str:
    """Independent Hermes rendering of an assistant message body (what the model generates)."""
    parts = [message["content"]] if message["content"] else []
    for call in message.get("tool_calls", []):
        body = json.dumps(
            {"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False
        )
        parts.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join(parts)


def corpus() -> list[str]:
    """Training text for the tiny tokenizer: the dialogue's strings plus some prose."""
    texts = [SYSTEM, json.dumps(TOOLS)]
    for m in DIALOGUE:
        texts.append(m["content"])
        if m["role"] == "assistant":
            texts.append(hermes_text(m))
    texts += [
        f"Booking {i}: passenger moves from Lyon to Paris on flight AF{i:03d}." for i in range(50)
    ]
    return texts * 4
