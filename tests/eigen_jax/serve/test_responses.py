"""Response builders on canned generations: Hermes tool calls -> OpenAI `tool_calls`, malformed
calls, tool_choice "none", stop trimming, finish reasons and SGLang's meta_info.

The expected tool calls come from the chat layer rendering an assistant message (the template
writes the exact text the model is trained to produce), so the round trip is checked against
an independent source of that text, not against strings written here by hand.
"""

import concurrent.futures
import json
import types

import numpy as np
import openai
import pytest

from eigen_jax.chat import ChatTemplate
from eigen_jax.sampling import Completion
from eigen_jax.serve import BackgroundServer, ModelServer, responses
from tests.eigen_jax.chat import dialogues

CALLS = [
    {"id": "x", "name": "get_user_details", "arguments": {"user_id": "mia_li_3668"}},
    {
        "id": "y",
        "name": "update_address",
        "arguments": {"user_id": "noah_8", "address": {"city": "Paris", "zip": "75002"}},
    },
]


@pytest.fixture(scope="module")
def chat(serve_checkpoint):
    return ChatTemplate.from_pretrained(serve_checkpoint)


def generated_ids(chat, message):
    """The ids the model would generate for `message` (up to and including end-of-turn)."""
    history = [{"role": "user", "content": "hi"}]
    delta, _ = chat.assistant_delta(history, message, dialogues.TOOLS)
    return chat.encode(delta.text)


def completion(ids, finish="stop", stop=None):
    ids = list(ids)
    if finish == "stop" and stop is None:
        stop = ids[-1]
    return Completion(
        0,
        np.asarray(ids, np.int32),
        -np.arange(1, len(ids) + 1, dtype=np.float32),
        finish,
        stop,
        10,
    )


def build(chat, comp, parse=True, logprobs=False):
    return responses.chat_response(
        comp,
        chat,
        model="m",
        request_id="r",
        created=0,
        prompt_tokens=10,
        parse_tool_calls=parse,
        logprobs=logprobs,
    )


def test_tool_calls_become_openai_tool_calls(chat):
    ids = generated_ids(
        chat, {"role": "assistant", "content": "Let me check.", "tool_calls": CALLS}
    )
    assert ids[-1] == chat.end_of_turn_id
    out = build(chat, completion(ids), logprobs=True)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    got = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert got == [(c["name"], c["arguments"]) for c in CALLS]
    assert all(isinstance(c.function.arguments, str) for c in choice.message.tool_calls)
    assert len({c.id for c in choice.message.tool_calls}) == 2
    assert out.usage.completion_tokens == len(ids) and out.usage.total_tokens == len(ids) + 10
    assert [t.logprob for t in choice.logprobs.content] == pytest.approx(
        -np.arange(1, len(ids) + 1)
    )
    assert "".join(t.token for t in choice.logprobs.content) == chat.decode(ids)


def test_tool_choice_none_and_malformed_calls_stay_text(chat):
    ids = generated_ids(chat, {"role": "assistant", "content": "", "tool_calls": CALLS[:1]})
    plain = build(chat, completion(ids), parse=False).choices[0]
    assert plain.message.tool_calls is None and plain.finish_reason == "stop"
    assert plain.message.content == chat.decode(ids[:-1])
    broken = chat.encode('<tool_call>\n{"name": "get_user_details", "arguments": {"user_')
    cut = build(chat, completion(broken, "length")).choices[0]
    assert cut.finish_reason == "length" and cut.message.tool_calls is None
    assert cut.message.content == chat.decode(broken)  # nothing the model wrote is dropped


def test_generate_response_trims_stops_like_sglang(chat):
    decode = lambda ids, skip: chat.tokenizer.decode(list(ids), skip_special_tokens=skip)
    ids = chat.encode("Paris is nice. Bye")
    by_string = completion(ids, "stop", stop=". B")
    out = responses.generate_response(
        by_string,
        decode=decode,
        request_id="a",
        prompt_tokens=3,
        return_logprob=True,
        return_text_in_logprobs=True,
    )
    assert out.text == "Paris is nice"
    assert out.meta_info["finish_reason"] == {"type": "stop", "matched": ". B"}
    assert [e[1] for e in out.meta_info["output_token_logprobs"]] == ids
    assert "".join(e[2] for e in out.meta_info["output_token_logprobs"]) == decode(ids, False)
    kept = responses.generate_response(
        by_string, decode=decode, request_id="a", prompt_tokens=3, no_stop_trim=True
    )
    assert kept.text == decode(ids, True)
    by_id = completion(ids + [chat.end_of_turn_id])
    out = responses.generate_response(by_id, decode=decode, request_id="b", prompt_tokens=3)
    assert out.text == "Paris is nice. Bye" and out.output_ids[-1] == chat.end_of_turn_id
    assert out.meta_info["finish_reason"] == {"type": "stop", "matched": chat.end_of_turn_id}
    assert "output_token_logprobs" not in out.meta_info
    length = responses.generate_response(
        completion(ids, "length"), decode=decode, request_id="c", prompt_tokens=3
    )
    assert length.meta_info["finish_reason"] == {"type": "length", "length": len(ids)}


class CannedLoop:
    """Stands in for the engine loop: answers every request with one fixed generation."""

    def __init__(self, ids):
        self.ids, self.prompts = ids, []
        self.engine = types.SimpleNamespace(max_len=4096, vocab_size=10**6, num_slots=1)
        self.healthy = True

    def submit(self, ids, params, seed):
        self.prompts.append(list(ids))
        future = concurrent.futures.Future()
        future.set_result(completion(self.ids))
        return future

    def stats(self):
        return {}

    def close(self):
        pass


def test_openai_client_receives_tool_calls_over_http(chat):
    ids = generated_ids(chat, {"role": "assistant", "content": "", "tool_calls": CALLS})
    loop = CannedLoop(ids)
    server = ModelServer(loop, chat, model_name="canned")
    messages = [{"role": "user", "content": "Move noah_8 to Paris."}]
    with BackgroundServer(server) as http:
        client = openai.OpenAI(base_url=f"{http.url}/v1", api_key="unused", max_retries=0)
        out = client.chat.completions.create(
            model="canned", messages=messages, tools=dialogues.TOOLS
        )
    assert loop.prompts == [chat.render(messages, dialogues.TOOLS, add_generation_prompt=True)]
    message = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls" and message.content is None
    assert [
        (c.type, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls
    ] == [("function", c["name"], c["arguments"]) for c in CALLS]
