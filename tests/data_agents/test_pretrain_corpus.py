"""The synthetic pretraining corpus: deterministic, copyable by construction, and free of the
built-in domain (its dialogues, tools, policy, templates and entity lists)."""

from __future__ import annotations

import json
import re

import pytest

from data_agents.domains import load
from data_agents.domains.outfitter import db, texts
from data_agents.domains.outfitter.tools import AGENT_TOOLS
from data_agents.pretrain import corpus

N_DOCS = 3000  # ~1.4M characters: enough for every kind and value type many times over


@pytest.fixture(scope="module")
def docs():
    return [corpus.document(i) for i in range(N_DOCS)]


@pytest.fixture(scope="module")
def text(docs):
    return "\n".join(json.dumps(d) for d in docs)


def test_documents_are_a_pure_function_of_index_and_seed():
    assert corpus.document(17) == corpus.document(17)
    assert corpus.document(17) != corpus.document(18)
    assert corpus.document(17, seed=1) != corpus.document(17)
    train = corpus.records("train", 5)
    test = corpus.records("test", 5)
    assert {r.key for r in train}.isdisjoint({r.key for r in test})
    assert [r.messages for r in train] != [r.messages for r in test]


def test_mix_of_kinds(docs):
    counts = {k: sum(d["kind"] == k for d in docs) for k in corpus.MIX}
    for kind, share in corpus.MIX.items():
        assert abs(counts[kind] / N_DOCS - share) < 0.05, counts


def _earlier_text(messages, upto):
    return " ".join(m["content"] + json.dumps(m.get("tool_calls", [])) for m in messages[:upto])


def test_every_copied_value_was_shown_earlier(docs):
    """What the corpus teaches: each tool-call argument and each value the assistant states in a
    recall or repeat answer appeared earlier in the conversation (so only copying predicts it)."""
    checked = 0
    for d in docs:
        msgs = d["messages"]
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            before = _earlier_text(msgs, i)
            for call in m.get("tool_calls", []):
                for value in call["arguments"].values():
                    assert value in before, (d["kind"], value)
                    checked += 1
            if d["kind"] in ("recall", "repeat") and m["content"] != "Noted.":
                payload = m["content"]
                if payload.startswith("{"):
                    values = json.loads(payload).values()
                else:
                    values = [x.split(": ", 1)[-1].rstrip(".") for x in payload.split("; ")]
                for value in values:
                    assert value in before, (d["kind"], value)
                    checked += 1
    assert checked > N_DOCS


def test_no_domain_content(text):
    domain = load("outfitter")
    tool_names = [t.name for t in AGENT_TOOLS]
    assert len(tool_names) >= 10
    for name in tool_names:
        assert name not in text
    policy_lines = [ln.strip() for ln in domain.policy.splitlines() if len(ln.strip()) >= 30]
    assert policy_lines and not any(ln in text for ln in policy_lines)
    templates = [t for ts in texts.REQUEST_TEMPLATES.values() for t in ts]
    fixed_parts = [p for t in templates for p in re.split(r"\{[^}]*\}", t) if len(p) >= 12]
    assert fixed_parts and not any(p in text for p in fixed_parts)
    words = set(re.findall(r"[a-z]+", text.lower()))
    entities = {w.lower() for w in db.FIRST_NAMES + db.LAST_NAMES}
    entities |= {c.lower() for c, _ in db.CITIES}
    assert not entities & words, sorted(entities & words)
    phrases = [s for s in db.STREETS] + [name for _, name, *_ in db.CATALOG]
    assert not any(p.lower() in text.lower() for p in phrases)


def test_records_follow_the_dialogue_contract():
    for r in corpus.records("train", 20):
        assert r.domain == corpus.DOMAIN and r.status == "accepted"
        assert r.messages[0]["role"] == "user"
        tool_msgs = [m for m in r.messages if m["role"] == "tool"]
        call_ids = {c["id"] for m in r.messages for c in m.get("tool_calls", [])}
        assert {m["tool_call_id"] for m in tool_msgs} <= call_ids
