"""Rollouts: token-in/token-out recording checked against teacher forcing, tool and parse errors
as tool messages, limits scoring 0, user stops scored by the checker, in-place weight updates."""

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data_agents.checkers.verdict import Verdict
from eigen_jax.rl.rollout import (
    EpisodeJob,
    RolloutConfig,
    RolloutWorker,
    _Live,
    make_jobs,
    sync_engine_params,
)
from eigen_jax.rl.user_sim import ReferenceUserSimulator, UserSimulator
from eigen_jax.sampling import Engine, Request, SamplingParams
from eigen_jax.sampling.config import SamplerConfig
from eigen_jax.train.state import split_model

MAX_LEN = 512


@pytest.fixture(autouse=True)
def compact_agent_prompt():
    with gin.unlock_config():
        gin.bind_parameter("agent_prompt.mode", "compact")
    yield
    gin.clear_config()


def make_engine(model, slots=4):
    # one prefill length bucket: few compilations
    return Engine(model, slots, MAX_LEN, max_prefill_len=256, min_prefill_len=256)


@pytest.fixture(scope="module")
def episodes(policy_model, rl_chat, outfitter):
    with gin.unlock_config():
        gin.bind_parameter("agent_prompt.mode", "compact")
    worker = RolloutWorker(
        make_engine(policy_model),
        rl_chat,
        outfitter,
        ReferenceUserSimulator(),
        RolloutConfig(max_new_tokens=64),
    )
    eps = worker.run(make_jobs(outfitter.tasks("train")[:3], 2))
    gin.clear_config()
    return eps


def test_recording_matches_teacher_forcing(episodes, policy_model, rl_chat):
    assert max(e.num_turns for e in episodes) >= 2  # multi-turn: cached turns were reused
    forward = jax.jit(lambda ids: jax.nn.log_softmax(policy_model(ids)))
    prompt = rl_chat.encode("<|im_start|>assistant\n")
    for ep in episodes:
        ids = np.zeros((1, 2 * MAX_LEN), np.int32)  # the closing user turn may pass MAX_LEN
        ids[0, : ep.length] = ep.tokens
        logp = np.asarray(forward(jnp.asarray(ids)))[0]
        t = np.where(ep.policy_mask)[0]
        np.testing.assert_allclose(ep.sampler_logprobs[t], logp[t - 1, ep.tokens[t]], atol=1e-4)
        np.testing.assert_array_equal(ep.sampler_logprobs[~ep.policy_mask], 0)
        for k, (start, end) in enumerate(ep.policy_turns):
            # a policy turn starts right after the generation prompt and, unless it was the
            # truncated last one, ends on a stop id
            assert list(ep.tokens[start - len(prompt) : start]) == prompt
            if k < ep.num_turns - 1 or ep.finish_reason != "turn_truncated":
                assert ep.tokens[end - 1] in rl_chat.stop_ids
        # the recorded ids are the conversation of the recorded messages
        assert ep.messages[0]["role"] == "system" and ep.messages[1]["role"] == "user"
        assert sum(m["role"] == "assistant" for m in ep.messages) == ep.num_turns


def test_limit_finishes_score_zero(episodes):
    for ep in episodes:
        if ep.finish_reason not in ("user_stop", "agent_stop"):
            assert ep.reward == 0.0 and ep.verdict is None
        else:
            assert ep.verdict is not None and ep.reward == ep.verdict.reward


def always_pass(domain, task, env, transcript):
    return Verdict("pass")


class StopAfterOpening(UserSimulator):
    def respond(self, turns):
        return [
            "I need help with my rental." if not t.messages else "Thanks. ###STOP###" for t in turns
        ]


def test_max_steps_scores_zero_and_user_stop_is_checked(policy_model, rl_chat, outfitter):
    engine = make_engine(policy_model)
    tasks = outfitter.tasks("train")[:2]
    # user message (1) + first policy turn (2) reach max_steps=2: reward 0 though the checker
    # would pass everything
    worker = RolloutWorker(
        engine,
        rl_chat,
        outfitter,
        StopAfterOpening(),
        RolloutConfig(max_steps=2, max_new_tokens=32),
        checker=always_pass,
    )
    eps = worker.run(make_jobs(tasks, 2))
    assert [e.finish_reason for e in eps] == ["max_steps"] * 4
    assert all(e.reward == 0.0 and e.verdict is None for e in eps)
    assert all(e.num_turns == 1 for e in eps)
    # with room, replies reach the user who stops at once: scored by the checker
    worker = RolloutWorker(
        engine,
        rl_chat,
        outfitter,
        StopAfterOpening(),
        RolloutConfig(max_steps=50, max_new_tokens=64),
        checker=always_pass,
    )
    eps = worker.run(make_jobs(tasks, 2))
    stopped = [e for e in eps if e.finish_reason == "user_stop"]
    assert all(e.reward == 1.0 and e.verdict.status == "pass" for e in stopped)
    assert all(e.messages[-1]["content"].endswith("###STOP###") for e in stopped)
    assert engine.num_free_slots == engine.num_slots  # every session was released


def live_episode(rl_chat, outfitter, max_errors=10):
    from eigen_jax.chat import views

    task = outfitter.tasks("train")[0]
    system, tools = views.agent_prompt(
        outfitter.policy, outfitter.make_env().tools_schema("assistant")
    )
    live = _Live(
        EpisodeJob(task, 0, 0),
        "s",
        outfitter.make_env(task),
        rl_chat,
        system,
        tools,
        RolloutConfig(max_errors=max_errors),
    )
    live.add_user("Hi, my email is nobody@example.com")
    return live


def turn(rl_chat, text):
    ids = rl_chat.encode(text) + [rl_chat.end_of_turn_id]
    return np.asarray(ids), np.full(len(ids), -1.0, np.float32)


def test_tool_and_parse_errors_become_tool_messages(rl_chat, outfitter):
    live = live_episode(rl_chat, outfitter, max_errors=2)
    good = (
        '<tool_call>\n{"name": "find_customer_by_email", "arguments": '
        '{"email": "nobody@example.com"}}\n</tool_call>'
    )
    assert live.add_policy(*turn(rl_chat, good), "stop") == "tool"
    assert live.transcript()[-1]["role"] == "tool" and live.errors == 1  # unknown customer
    assert live.transcript()[-1]["tool_call_id"] == live.transcript()[-2]["tool_calls"][0]["id"]
    bad = '<tool_call>\n{"name": "find_customer_by_email", "arguments": {oops\n</tool_call>'
    assert live.add_policy(*turn(rl_chat, bad), "stop") == "tool"
    last = live.transcript()[-1]
    assert last["role"] == "tool" and "could not parse tool call" in last["content"]
    assert live.errors == 2 and live.finish is None
    unknown = '<tool_call>\n{"name": "no_such_tool", "arguments": {}}\n</tool_call>'
    assert live.add_policy(*turn(rl_chat, unknown), "stop") == "done"
    assert live.finish == "max_errors" and "no_such_tool" in live.transcript()[-1]["content"]
    ep = live.episode(0.0, None)
    assert ep.num_turns == 3 and ep.num_tool_errors == 3
    # tool results are context, not policy tokens
    assert not ep.policy_mask[ep.policy_turns[0][1] : ep.policy_turns[1][0]].any()


def test_plain_reply_goes_to_the_user_and_truncation_ends(rl_chat, outfitter):
    live = live_episode(rl_chat, outfitter)
    assert live.add_policy(*turn(rl_chat, "Could you confirm your zip code?"), "stop") == "user"
    ids, lps = turn(rl_chat, "I will now")
    assert live.add_policy(ids[:-1], lps[:-1], "length") == "done"
    assert live.finish == "turn_truncated"


def test_sync_engine_params_updates_in_place(policy_model, rl_chat):
    engine = make_engine(policy_model, slots=2)
    graphdef, params, rest = split_model(policy_model)
    prompt = rl_chat.encode("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12)
    before = engine.run([Request("a", prompt, greedy)])[0].token_ids
    shifted = jax.tree.map(
        lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape), params
    )
    sync_engine_params(engine, graphdef, shifted, rest)
    after = engine.run([Request("b", prompt, greedy)])[0].token_ids
    fresh = make_engine(nnx.merge(graphdef, shifted, rest), slots=2)
    expected = fresh.run([Request("c", prompt, greedy)])[0].token_ids
    np.testing.assert_array_equal(after, expected)
    assert not np.array_equal(before, after)


def test_model_user_is_sampled_on_the_flipped_view(policy_model, rl_chat, outfitter):
    """Greedy replies equal a cache-free greedy decode of the full render of
    `views.user_messages` (an independent path: full template render, no engine)."""
    from eigen_jax.chat import views
    from eigen_jax.rl.user_sim import ModelUserSimulator, UserTurn

    task = outfitter.tasks("train")[1]
    history = [
        {"role": "user", "content": "Hi, I want to rent a tent."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c0", "name": "list_gear", "arguments": {}}],
        },
        {"role": "tool", "content": "[]", "tool_call_id": "c0"},
        {"role": "assistant", "content": "Sure. What is your email?"},
    ]
    user_len = 2 * MAX_LEN  # the user's system prompt (guidelines + scenario) is long
    sim = ModelUserSimulator(
        policy_model,
        rl_chat,
        sampler=SamplerConfig(num_slots=2, max_len=user_len),
        sampling=SamplingParams(temperature=0.0, max_new_tokens=8),
    )
    replies = sim.respond([UserTurn(task, history, "k"), UserTurn(task, [], "k")])
    forward = jax.jit(lambda ids: policy_model(ids))
    for msgs, reply in zip((history, []), replies):
        flipped = views.user_messages(msgs, task.model_dump(mode="json"))
        ids = rl_chat.render(flipped, add_generation_prompt=True)
        for _ in range(8):
            padded = np.zeros((1, user_len), np.int32)
            padded[0, : len(ids)] = ids
            nxt = int(np.argmax(np.asarray(forward(jnp.asarray(padded)))[0, len(ids) - 1]))
            ids.append(nxt)
            if nxt in rl_chat.stop_ids:
                break
        generated = ids[len(rl_chat.render(flipped, add_generation_prompt=True)) :]
        assert reply.content == rl_chat.parse(generated).content.strip()


class _Blocking(UserSimulator):
    """Only `respond`: the base class answers each submitted batch at once (the old loop)."""

    def __init__(self, sim):
        self.sim = sim

    def respond(self, turns):
        return self.sim.respond(turns)


def test_interleaved_model_user_equals_blocking_user(policy_model, rl_chat, outfitter):
    """Stepping the user model between policy steps changes only the schedule, not one token:
    per-turn seeds make sampling independent of which turns share a batch."""
    from eigen_jax.rl.user_sim import ModelUserSimulator

    def play(user):
        worker = RolloutWorker(
            make_engine(policy_model),
            rl_chat,
            outfitter,
            user,
            RolloutConfig(max_new_tokens=32, max_steps=12),
        )
        return worker.run(make_jobs(outfitter.tasks("train")[:2], 2), seed=2)

    def user_model():
        return ModelUserSimulator(
            policy_model,
            rl_chat,
            sampler=SamplerConfig(num_slots=4, max_len=3 * MAX_LEN),
            sampling=SamplingParams(temperature=1.0, max_new_tokens=16),
        )

    interleaved, blocking = play(user_model()), play(_Blocking(user_model()))
    assert max(sum(m["role"] == "user" for m in e.messages) for e in interleaved) >= 2
    for a, b in zip(interleaved, blocking):
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.policy_mask, b.policy_mask)
        np.testing.assert_allclose(a.sampler_logprobs, b.sampler_logprobs, atol=1e-5)
        assert (a.reward, a.finish_reason) == (b.reward, b.finish_reason)


def test_user_context_overflow_ends_the_episode_not_the_rollout(policy_model, rl_chat, outfitter):
    """A user prompt longer than the user engine ends that episode as `max_context` (reward 0);
    the direct `respond` call still raises, naming the limit."""
    from eigen_jax.rl.user_sim import ContextOverflow, ModelUserSimulator, UserTurn

    sim = ModelUserSimulator(
        policy_model,
        rl_chat,
        sampler=SamplerConfig(num_slots=2, max_len=64),
        sampling=SamplingParams(temperature=1.0, max_new_tokens=8),
    )
    worker = RolloutWorker(
        make_engine(policy_model), rl_chat, outfitter, sim, RolloutConfig(max_new_tokens=16)
    )
    episodes = worker.run(make_jobs(outfitter.tasks("train")[:2], 2))
    assert [(e.finish_reason, e.reward) for e in episodes] == [("max_context", 0.0)] * 4
    assert not sim.has_work() and not worker.engine.has_work()
    with pytest.raises(ContextOverflow, match="max_len=64"):
        sim.respond([UserTurn(outfitter.tasks("train")[0], [], "k")])


TELECOM_TASK = "[mobile_data_issue]data_saver_mode_on|user_abroad_roaming_enabled_off[PERSONA:Easy]"


class ScriptedTelecomUser(UserSimulator):
    """tau2 telecom's dual control: fixes its phone with two of its own tools, then stops."""

    def __init__(self):
        from data_agents.dialogue import Call, Turn

        self.script = [
            Turn("", (Call("u1", "toggle_data_saver_mode", {}),)),
            Turn("", (Call("u2", "toggle_roaming", {}),)),
            Turn("My data works now. ###STOP###"),
        ]
        self.seen = []

    def respond(self, turns):
        self.seen += turns
        return [self.script[sum(m["role"] == "user" for m in t.messages)] for t in turns]


def test_tau2_telecom_user_tools_run_as_the_user_and_the_checker_sees_them(policy_model, rl_chat):
    """A tiny policy on tau2:telecom with a scripted user acting on its own device: the calls
    run in the environment as the user, the user's view holds their results (the agent's never
    does), and tau2's env assertions on the device pass (reward 1)."""
    from data_agents.domains import load

    telecom = load("tau2:telecom")
    task = next(t for t in telecom.tasks("test") if t.id == TELECOM_TASK)
    user = ScriptedTelecomUser()
    worker = RolloutWorker(
        make_engine(policy_model), rl_chat, telecom, user, RolloutConfig(max_new_tokens=16)
    )
    eps = worker.run(make_jobs([task], 2))
    assert [(e.finish_reason, e.reward) for e in eps] == [("user_stop", 1.0)] * 2
    assert all(e.verdict.status == "pass" for e in eps)
    assert user.seen[0].guidelines == telecom.user_policy
    assert "toggle_roaming" in {t["function"]["name"] for t in user.seen[0].tools}
    last_view = user.seen[-1].view()
    assert "Data Roaming is now ON" in last_view[-1]["content"]
    assert [m["role"] for m in last_view[:2]] == ["system", "user"]  # tau2's greeting
    for e in eps:  # the agent never saw the user's tool calls or their results
        assert "Data Roaming" not in rl_chat.decode(e.tokens.tolist())
        assert [m["role"] for m in e.messages] == ["system", "user", "tool", "user", "tool", "user"]
