"""Prompt versions: v0 shipped, commits stored on disk, content-addressed, safe rendering."""

import json

import pytest

from data_agents.prompts import AGENTS, PromptStore, builtin_templates, seed_plans


def test_v0_has_every_agent_and_renders(tmp_path):
    store = PromptStore(tmp_path)
    v0 = store.get("v0")
    assert set(v0.templates) == set(AGENTS) == set(builtin_templates())
    text = v0.render("assistant", domain="outfitter", policy="POLICY TEXT $5 fee")
    assert "POLICY TEXT $5 fee" in text and "$guidance" not in text and "$domain" not in text
    assert len(seed_plans()) >= 4


def test_commit_stores_versions_and_dedupes(tmp_path):
    store = PromptStore(tmp_path)
    v1 = store.commit(
        "v0", {"assistant": "Confirm first.", "bogus_agent": "x"}, round_index=0, reason="r0"
    )
    assert v1.name == "v1" and v1.guidance == {"assistant": "Confirm first."}
    assert "Additional guidance:\nConfirm first." in v1.render("assistant", domain="d", policy="p")
    assert (
        store.commit("v0", {"assistant": "Confirm first."}, round_index=0, reason="again").name
        == "v1"
    )  # a resumed run does not duplicate
    v2 = store.commit("v1", {"assistant": "Other."}, round_index=1, reason="r1")
    assert v2.name == "v2" and store.versions() == ["v0", "v1", "v2"]
    meta = json.loads((tmp_path / "v2" / "meta.json").read_text())
    assert meta == {"parent": "v1", "round": 1, "reason": "r1"}
    assert PromptStore(tmp_path).get("v2").guidance == {"assistant": "Other."}  # reloads
    with pytest.raises(KeyError, match="unknown prompt version 'v9'"):
        store.get("v9")
