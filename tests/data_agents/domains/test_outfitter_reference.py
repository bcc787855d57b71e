"""Outfitter reference solver: agent + user reach the gold DB; the user copes with bad agents."""

from __future__ import annotations

import pytest

from data_agents.domains import load
from data_agents.domains.outfitter.dialogue import run_reference_dialogue
from data_agents.domains.outfitter.reference_agent import ReferenceAgent, parse_request
from data_agents.domains.outfitter.reference_user import ReferenceUser
from data_agents.records import validate_messages


@pytest.fixture(scope="module")
def domain():
    return load("outfitter", n_train=150, n_test=100)


def _gold_hash(domain, task):
    env = domain.make_env(task)
    for action in task.evaluation_criteria.actions:
        env.call(action.name, action.arguments, action.requestor)
    return env.db_hash()


def test_reference_dialogues_reach_the_gold_db(domain):
    tasks = domain.tasks("train") + domain.tasks("test")
    passed, refusal_only = 0, 0
    for task in tasks:
        record = run_reference_dialogue(domain, task)
        assert validate_messages(record["messages"]) == record["messages"]
        text = " ".join(m["content"] for m in record["messages"] if m["role"] == "assistant")
        ok = (
            record["termination"] == "user_stop"
            and record["final_env"].db_hash() == _gold_hash(domain, task)
            and all(f in text for f in task.evaluation_criteria.communicate_info)
        )
        passed += ok
        if task.description["n_writes"] == 0:  # refusals / declines / transfers: no change
            refusal_only += 1
            assert record["final_env"].db_hash() == domain.make_env(task).db_hash(), task.id
    assert refusal_only >= 20
    assert passed / len(tasks) >= 0.95, f"{passed}/{len(tasks)}"


def test_dialogues_are_short_and_regular(domain):
    for task in domain.tasks("test")[:30]:
        messages = run_reference_dialogue(domain, task)["messages"]
        user_turns = sum(m["role"] == "user" for m in messages)
        assert 2 <= user_turns <= 3 + 3 * task.description["n_requests"]
        assert messages[0] == {"role": "system", "content": domain.policy}


def test_agent_verifies_identity_before_anything_else(domain):
    task = next(
        t for t in domain.tasks("test") if not t.description["user_script"]["volunteer_identity"]
    )
    messages = [{"role": "user", "content": ReferenceUser(task).first_message()}]
    reply = ReferenceAgent(domain).act(messages)
    assert "verify your identity" in reply["content"] and not reply.get("tool_calls")


class _Parrot:
    """A useless assistant: always says the same thing."""

    def act(self, messages, schema):
        return {"role": "assistant", "content": "Hmm."}


class _Pushover:
    """A bad assistant: asks for confirmation forever, never acts."""

    def act(self, messages, schema):
        return {"role": "assistant", "content": "Do you confirm? (yes/no)"}


@pytest.mark.parametrize("agent", [_Parrot(), _Pushover()])
def test_reference_user_ends_stuck_dialogues(domain, agent):
    for task in domain.tasks("test")[:10]:
        record = run_reference_dialogue(domain, task, max_turns=60, agent=agent)
        assert record["termination"] == "user_stop"
        assert sum(m["role"] == "user" for m in record["messages"]) <= 4 + 3 * len(
            task.description["user_script"]["requests"]
        )
        assert record["final_env"].db_hash() == domain.make_env(task).db_hash()


def test_reference_user_follows_its_script(domain):
    task = next(
        t for t in domain.tasks("test") if len(t.description["user_script"]["requests"]) >= 2
    )
    user, script = ReferenceUser(task), task.description["user_script"]
    first = user.first_message()
    assert first.endswith(script["requests"][0]["text"])
    messages = [{"role": "user", "content": first}]
    messages.append({"role": "assistant", "content": "Could you give me your email or zip code?"})
    assert user.respond(messages) == script["identity_text"]
    messages.append({"role": "user", "content": script["identity_text"]})
    messages.append({"role": "assistant", "content": "Done. Is there anything else?"})
    assert user.respond(messages) == script["requests"][1]["text"]
    messages.append({"role": "user", "content": script["requests"][1]["text"]})
    messages.append({"role": "assistant", "content": "Shall I proceed? (yes/no)"})
    answer = user.respond(messages)
    assert answer.startswith("Yes" if script["requests"][1]["confirm"] else ("No", "Actually no"))
    messages.append({"role": "assistant", "content": "I have transferred you to a human agent."})
    assert user.respond(messages) == "###STOP###"
    with pytest.raises(ValueError, match="no outfitter user_script"):
        ReferenceUser(task.model_copy(update={"description": None}))


def test_request_parsing_ignores_distractor_sentences():
    req = parse_request(
        "Hi! By the way, my last rental R2001 went great. Please cancel my rental R3005."
    )
    assert (req["kind"], req["rental_id"]) == ("cancel", "R3005")
    req = parse_request("Can I book the Sea Kayak Pro from 2025-06-20 until 2025-06-22?")
    assert (req["kind"], req["category"], req["start"], req["end"]) == (
        "create",
        "kayak",
        "2025-06-20",
        "2025-06-22",
    )
    assert parse_request("My kids love camping.") is None
