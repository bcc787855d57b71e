"""A synthetic, domain-independent pretraining corpus: what a pretrained LLM brings to agent SFT.

Why: a tiny model trained from scratch on a domain's dialogues learns the templated turns fast
but predicts names and ids from their training-set prior instead of copying them from the
conversation, and copying emerges only after ~2000 SFT steps (bench/NOTES.md, "Copying
arguments"). The paper starts from a pretrained model, which already copies. This corpus teaches
that skill on its own: every document is a chat in which values seen earlier (invented names,
emails, codes, numbers, dates, addresses) must be copied — into a tool call's JSON arguments,
back from a tool's JSON result into prose, recalled by key several turns later, or repeated
verbatim. Values are drawn at random, so no prior can predict them; only looking back can.

Nothing here comes from a domain: words are common English (`words.txt`, derived by
scripts/pretrain_word_list.py), names are invented from syllables, tool names are verb_noun
pairs whose verbs no built-in tool uses. Documents are records of the dialogue contract
(`data_agents.records`), so they reach the learner as every dataset does: journal → TFDS.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import random
from collections.abc import Callable
from typing import Any

from data_agents.records import DialogueRecord

DOMAIN = "synthetic_pretrain"
STOP = "###STOP###"
_ONSETS = "b d f g k l m n p r s t v z br dr fr gr kr pr tr st sk sl".split()
_NUCLEI = "a e i o u a e o ai ou".split()
_CODAS = ["", "", "", "n", "r", "l", "m", "th"]
# Verbs no built-in tool starts with (outfitter: find/get/search/check/create/cancel/modify/
# update/redeem/transfer), so a generated tool name can never be one of the domain's.
_VERBS = "lookup fetch open close register list record book assign send verify add remove set"
_VERBS = _VERBS.split() + "read submit archive rename lock unlock attach review".split()


@functools.cache
def words() -> tuple[str, ...]:
    text = importlib.resources.files(__package__).joinpath("words.txt").read_text()
    return tuple(w for w in text.split() if w)


class _Values:
    """Random values of the kinds a tool-using agent copies."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def word(self) -> str:
        vocab = words()  # frequency-ordered; a power law favours the frequent ones
        return vocab[int(len(vocab) * self.rng.random() ** 3)]

    def phrase(self, lo: int = 3, hi: int = 9) -> str:
        return " ".join(self.word() for _ in range(self.rng.randint(lo, hi)))

    def name(self) -> str:
        while True:
            n = "".join(
                self.rng.choice(_ONSETS) + self.rng.choice(_NUCLEI) + self.rng.choice(_CODAS)
                for _ in range(self.rng.randint(2, 3))
            )
            if len(n) >= 5:
                return n.capitalize()

    def digits(self, n: int) -> str:
        return str(self.rng.randint(10 ** (n - 1), 10**n - 1))

    def code(self) -> str:
        prefix = "".join(self.rng.choice("ABDEFHKMNPRTVXZ") for _ in range(self.rng.randint(1, 2)))
        return prefix + self.rng.choice(["", "-"]) + self.digits(self.rng.randint(3, 5))

    def date(self) -> str:
        y, m, d = self.rng.randint(2019, 2031), self.rng.randint(1, 12), self.rng.randint(1, 28)
        return f"{y}-{m:02d}-{d:02d}"

    def email(self, first: str, last: str) -> str:
        return (
            f"{first.lower()}.{last.lower()}{self.digits(self.rng.randint(2, 3))}@{self.word()}.net"
        )

    def street(self) -> str:
        kind = self.rng.choice(["Road", "Lane", "Street", "Avenue"])
        return f"{self.digits(self.rng.randint(2, 4))} {self.name()} {kind}"

    def amount(self) -> str:
        return f"{self.rng.randint(1, 999)}.{self.rng.randint(0, 99):02d}"

    def value(self, kind: str) -> str:
        return {
            "name": self.name,
            "code": self.code,
            "date": self.date,
            "number": lambda: self.digits(self.rng.randint(2, 6)),
            "amount": self.amount,
            "street": self.street,
            "word": self.word,
        }[kind]()


_KINDS = ("name", "code", "date", "number", "amount", "street", "word")


def _field(v: _Values, kind: str) -> str:
    suffix = {"name": "name", "code": "id", "date": "date", "number": "number", "amount": "total"}
    return f"{v.word()}_{suffix.get(kind, v.word())}"


def _tool(name: str, fields: list[str], v: _Values) -> dict[str, Any]:
    props = {f: {"type": "string", "description": v.phrase(1, 3)} for f in fields}
    params = {"type": "object", "properties": props, "required": list(fields)}
    return {
        "type": "function",
        "function": {"name": name, "description": v.phrase(2, 5), "parameters": params},
    }


def _call(i: int, name: str, args: dict[str, str]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": f"call_{i}", "name": name, "arguments": args}],
    }


def _result(i: int, payload: dict[str, str]) -> dict[str, Any]:
    return {
        "role": "tool",
        "content": json.dumps(payload, separators=(",", ":")),
        "tool_call_id": f"call_{i}",
    }


def tool_dialogue(v: _Values) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages, tools): the user gives values in prose, the agent copies them into a call, the
    tool answers with new values, the agent reports them, and later recalls one by its key or
    passes it on to a second call."""
    rng, first, last = v.rng, v.name(), v.name()
    noun = v.word()
    lookup, action = f"{rng.choice(_VERBS)}_{noun}", f"{rng.choice(_VERBS)}_{v.word()}"
    kinds = rng.sample(_KINDS, rng.randint(1, 3))
    given = (
        {"first_name": first, "last_name": last}
        if rng.random() < 0.5
        else {"email": v.email(first, last)}
    )
    given |= {_field(v, k): v.value(k) for k in kinds}
    prose = ", ".join(f"my {k.replace('_', ' ')} is {val}" for k, val in given.items())
    key = f"{noun}_id"
    found = {key: v.code(), **{_field(v, k): v.value(k) for k in rng.sample(_KINDS, 2)}}
    change = {_field(v, k): v.value(k) for k in rng.sample(_KINDS, 1)}
    msgs = [
        {"role": "user", "content": f"{v.phrase(2, 6)}. {prose}. {v.phrase(3, 8)}?"},
        _call(0, lookup, dict(rng.sample(list(given.items()), len(given)))),
        _result(0, found),
        {
            "role": "assistant",
            "content": "I found it: "
            + ", ".join(f"{k.replace('_', ' ')} {x}" for k, x in found.items())
            + ". "
            + v.phrase(2, 5)
            + "?",
        },
    ]
    asked = rng.choice(list(found) + list(given))
    value = {**found, **given}[asked]
    msgs += [
        {
            "role": "user",
            "content": f"{v.phrase(1, 4)}. what was the {asked.replace('_', ' ')} again?",
        },
        {"role": "assistant", "content": f"The {asked.replace('_', ' ')} is {value}."},
        {
            "role": "user",
            "content": f"please {action.replace('_', ' ')} with "
            + ", ".join(f"{k.replace('_', ' ')} {x}" for k, x in change.items())
            + ".",
        },
        _call(1, action, {key: found[key], **change}),
        _result(1, {key: found[key], "status": v.word(), **change}),
        {
            "role": "assistant",
            "content": f"Done: {key.replace('_', ' ')} {found[key]} now has "
            + ", ".join(f"{k.replace('_', ' ')} {x}" for k, x in change.items())
            + ". Anything else?",
        },
        {"role": "user", "content": f"no, thanks. {STOP}"},
    ]
    # Schemas are long; most documents leave them out (as the compact agent prompt does), so the
    # corpus is mostly conversation.
    tools = [_tool(lookup, list(given), v), _tool(action, [key, *change], v)]
    return msgs, tools if rng.random() < TOOL_LISTING_P else []


def recall_dialogue(v: _Values) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Key→value lookup: the user lists pairs, then asks for some of them, in prose or as a JSON
    object."""
    rng = v.rng
    pairs = {_field(v, k): v.value(k) for k in rng.choices(_KINDS, k=rng.randint(3, 8))}
    asked = rng.sample(list(pairs), rng.randint(1, min(3, len(pairs))))
    listing = "; ".join(f"{k.replace('_', ' ')}: {x}" for k, x in pairs.items())
    question = ", ".join(a.replace("_", " ") for a in asked)
    if rng.random() < 0.5:
        ask, answer = f"as json, give me {question}.", json.dumps({a: pairs[a] for a in asked})
    else:
        ask, answer = (
            f"what is the {question}?",
            "; ".join(f"{a.replace('_', ' ')}: {pairs[a]}" for a in asked) + ".",
        )
    return [
        {"role": "user", "content": f"{v.phrase(2, 5)}. note these: {listing}."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": f"{v.phrase(1, 4)}. {ask}"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": STOP},
    ], []


def repeat_dialogue(v: _Values) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Verbatim copying of spans of words and values, a few rounds per document: the densest
    copying signal, which forms the look-back-and-copy circuit first."""
    rng, messages = v.rng, []
    for _ in range(rng.randint(2, 4)):
        span = " ".join(
            v.value(rng.choice(_KINDS)) if rng.random() < 0.4 else v.word()
            for _ in range(rng.randint(6, 24))
        )
        messages += [
            {"role": "user", "content": f"please repeat exactly: {span}"},
            {"role": "assistant", "content": span},
        ]
    return [*messages, {"role": "user", "content": STOP}], []


KINDS: dict[str, Callable[[_Values], tuple[list, list]]] = {
    "tool": tool_dialogue,
    "recall": recall_dialogue,
    "repeat": repeat_dialogue,
}
TOOL_LISTING_P = 0.3
MIX = {"tool": 0.45, "recall": 0.25, "repeat": 0.3}


def document(index: int, seed: int = 0) -> dict[str, Any]:
    """Document `index` of the corpus: {kind, policy, messages, tools}; a pure function of
    (index, seed), so any document can be regenerated alone."""
    rng = random.Random(f"{seed}/{index}")
    v = _Values(rng)
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    messages, tools = KINDS[kind](v)
    policy = f"You are a helpful assistant. {v.phrase(4, 10)}. Today is {v.date()}."
    return {"kind": kind, "policy": policy, "messages": messages, "tools": tools}


def records(split: str, count: int, seed: int = 0) -> list[DialogueRecord]:
    """`count` documents of `split` (train and test draw disjoint index ranges) as records."""
    offset = {"train": 0, "test": 10**9}[split]
    out = []
    for i in range(count):
        doc = document(offset + i, seed)
        out.append(
            DialogueRecord(
                key=f"{DOMAIN}/{split}/{i}",
                status="accepted",
                domain=DOMAIN,
                task={"id": f"{split}_{i}", "kind": doc["kind"]},
                tools=doc["tools"],
                policy=doc["policy"],
                messages=doc["messages"],
                provenance={"source": "data_agents.pretrain.corpus", "seed": seed},
                split=split,
            )
        )
    return out
