"""The served routes end to end over HTTP, with the `openai` client and `LLMClient`.

Independent reference: `eigen_jax.sampling.generate` on the same checkpoint loaded separately,
and the chat layer's own render/parse for prompts and tool calls.
"""

import asyncio
import json

import httpx
import numpy as np
import openai
import pytest

from data_agents.llm import LLMClient
from eigen_jax.sampling import SamplingParams, generate
from tests.eigen_jax.chat import dialogues

PROMPTS = [[5, 17, 42, 99, 7], [300, 12, 8], [64, 65, 66, 67, 68, 69, 70, 71, 72]]


def run(coro):
    return asyncio.run(coro)


async def _generate_all(url, prompts, sampling_params, concurrently):
    async with LLMClient(url, max_retries=0) as llm:
        calls = [
            llm.generate(
                input_ids=p, sampling_params=sampling_params, return_logprob=True, use_cache=False
            )
            for p in prompts
        ]
        if concurrently:
            return await asyncio.gather(*calls)
        return [await c for c in calls]


@pytest.mark.parametrize("ignore_eos", [True, False])
def test_generate_greedy_matches_reference(http_server, model_server, reference_model, ignore_eos):
    stops = () if ignore_eos else model_server.chat.stop_ids
    ref = generate(
        reference_model,
        PROMPTS,
        SamplingParams(temperature=0.0, max_new_tokens=12, stop_token_ids=stops),
    )
    outs = run(
        _generate_all(
            http_server.url,
            PROMPTS,
            {"temperature": 0, "max_new_tokens": 12, "ignore_eos": ignore_eos},
            False,
        )
    )
    for prompt, out, expected in zip(PROMPTS, outs, ref):
        assert out.output_ids == expected.token_ids.tolist()
        np.testing.assert_allclose(out.output_logprobs, expected.logprobs, atol=2e-4)
        assert out.finish_reason == expected.finish_reason
        assert out.prompt_tokens == len(prompt)
        assert out.completion_tokens == len(expected.token_ids)
        special = set(model_server.chat.tokenizer.all_special_ids)
        kept = [t for t in expected.token_ids.tolist() if t not in special]
        if expected.finish_reason == "stop":
            kept = [t for t in expected.token_ids.tolist()[:-1] if t not in special]
        assert out.text == model_server.chat.tokenizer.decode(kept, skip_special_tokens=True)


def test_concurrent_requests_equal_sequential(http_server):
    params = {"temperature": 0, "max_new_tokens": 10, "ignore_eos": True}
    prompts = PROMPTS * 3  # more requests than slots: some wait for a free one
    sequential = run(_generate_all(http_server.url, prompts, params, False))
    concurrent = run(_generate_all(http_server.url, prompts, params, True))
    assert [o.output_ids for o in concurrent] == [o.output_ids for o in sequential]
    for c, s in zip(concurrent, sequential):
        np.testing.assert_allclose(c.output_logprobs, s.output_logprobs, atol=2e-4)


def test_generate_text_and_batch(http_server, model_server):
    text = "Hi, please look up mia_li_3668."
    ids = model_server.encode(text)
    body = {
        "text": text,
        "sampling_params": {"temperature": 0, "max_new_tokens": 6, "ignore_eos": True},
        "return_logprob": True,
    }
    single = httpx.post(f"{http_server.url}/generate", json=body, timeout=60).json()
    by_ids = httpx.post(
        f"{http_server.url}/generate", timeout=60, json={**body, "text": None, "input_ids": ids}
    ).json()
    assert single["output_ids"] == by_ids["output_ids"]
    assert single["meta_info"]["prompt_tokens"] == len(ids)
    assert single["meta_info"]["finish_reason"] == {"type": "length", "length": 6}
    batch = httpx.post(
        f"{http_server.url}/generate", timeout=60, json={**body, "text": [text, text + " Thanks"]}
    ).json()
    assert isinstance(batch, list) and len(batch) == 2
    assert batch[0]["output_ids"] == single["output_ids"]


def test_sampled_requests_with_seed_reproduce(http_server):
    params = {
        "temperature": 1.0,
        "top_k": 50,
        "max_new_tokens": 8,
        "sampling_seed": 7,
        "ignore_eos": True,
    }
    a, b = run(_generate_all(http_server.url, PROMPTS[:1] * 2, params, False))
    assert a.output_ids == b.output_ids


CHAT = [
    {"role": "system", "content": dialogues.SYSTEM},
    {"role": "user", "content": "Hi, I'm mia_li_3668."},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {
                    "name": "get_user_details",
                    "arguments": json.dumps({"user_id": "mia_li_3668"}),
                },
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": '{"name": "Mia Li", "city": "Lyon"}'},
]


def test_chat_with_openai_client_matches_chat_layer(http_server, model_server, reference_model):
    chat = model_server.chat
    client = openai.OpenAI(base_url=f"{http_server.url}/v1", api_key="unused", max_retries=0)
    out = client.chat.completions.create(
        model="tiny",
        messages=CHAT,
        tools=dialogues.TOOLS,
        tool_choice="auto",
        temperature=0,
        max_tokens=16,
        logprobs=True,
    )
    prompt = chat.render(CHAT, dialogues.TOOLS, add_generation_prompt=True)
    ref = generate(
        reference_model,
        [prompt],
        SamplingParams(temperature=0.0, max_new_tokens=16, stop_token_ids=chat.stop_ids),
    )[0]
    parsed = chat.parse(ref.token_ids.tolist())
    choice = out.choices[0]
    assert out.usage.prompt_tokens == len(prompt)
    assert out.usage.completion_tokens == len(ref.token_ids)
    assert out.model == "tiny"
    if not parsed.errors and not parsed.tool_calls:
        assert choice.message.content == parsed.content
    assert choice.finish_reason == ("length" if ref.finish_reason == "length" else "stop")
    np.testing.assert_allclose(
        [t.logprob for t in choice.logprobs.content], ref.logprobs, atol=2e-4
    )
    models = client.models.list()
    assert [m.id for m in models.data] == [model_server.model_name]


def test_llm_client_chat_health_and_model_info(http_server, model_server):
    async def go():
        async with LLMClient(http_server.url, max_retries=0) as llm:
            completion = await llm.chat(
                CHAT, tools=dialogues.TOOLS, temperature=0, max_tokens=4, use_cache=False
            )
            return completion, await llm.health(), await llm.model_info()

    completion, health, info = run(go())
    assert completion.usage.completion_tokens == 4
    assert completion.choices[0].finish_reason == "length"
    assert list(health.values()) == [True]
    assert info["is_generation"] and info["max_len"] == model_server.max_len
    assert info["model_path"] == model_server.model_path


@pytest.mark.parametrize(
    "path, body, field",
    [
        (
            "/generate",
            {"input_ids": [1, 2], "sampling_params": {"temperature": -1}},
            "sampling_params.temperature",
        ),
        ("/generate", {"input_ids": [1, 2], "sampling_params": {"min_p": 0.3}}, "min_p"),
        (
            "/generate",
            {"input_ids": [1, 2], "sampling_params": {"max_new_tokenz": 3}},
            "max_new_tokenz",
        ),
        ("/generate", {"input_ids": [1, 2], "text": "both"}, "exactly one of text or input_ids"),
        ("/generate", {"input_ids": [5] * 700}, "input_ids"),
        ("/generate", {"input_ids": [1, 10**6]}, "input_ids"),
        ("/generate", {"input_ids": [1], "stream": True}, "stream"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": dialogues.TOOLS,
                "tool_choice": "required",
            },
            "tool_choice",
        ),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 2}, "n=2"),
        ("/v1/chat/completions", {"messages": []}, "messages"),
    ],
)
def test_bad_requests_get_400_naming_the_field(http_server, path, body, field):
    response = httpx.post(http_server.url + path, json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["message"]


def test_openai_client_sees_bad_request(http_server):
    client = openai.OpenAI(base_url=f"{http_server.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(
            model="x", messages=[{"role": "user", "content": "hi"}], temperature=-0.5
        )


def test_invalid_json_is_400(http_server):
    response = httpx.post(
        http_server.url + "/generate",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400


BIG = 3_000_000_000  # past int32: the engine's arrays cannot hold it


@pytest.mark.parametrize(
    "path, body, field",
    [
        (
            "/generate",
            {"input_ids": [1, 2], "sampling_params": {"stop_token_ids": [BIG]}},
            "sampling_params.stop_token_ids.0",
        ),
        (
            "/generate",
            {"input_ids": [1, 2], "sampling_params": {"top_k": BIG}},
            "sampling_params.top_k",
        ),
        (
            "/generate",
            {"input_ids": [1, 2], "sampling_params": {"max_new_tokens": BIG}},
            "sampling_params.max_new_tokens",
        ),
        ("/generate", {"input_ids": [1, BIG]}, "input_ids"),
        ("/generate", {"input_ids": [1, 2], "top_logprobs_num": BIG}, "top_logprobs_num"),
        (
            "/generate",
            {"input_ids": [1, 2], "sampling_params": {"temperature": "Infinity"}},
            "sampling_params.temperature",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": BIG},
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "top_k": BIG},
            "top_k",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": BIG},
            "max_completion_tokens",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "x"}], "top_p": float("nan")},
            "top_p",
        ),
    ],
)
def test_out_of_range_numbers_get_400_and_the_server_keeps_serving(http_server, path, body, field):
    response = httpx.post(
        http_server.url + path,
        content=json.dumps(body),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["message"]
    assert httpx.get(http_server.url + "/health", timeout=30).status_code == 200
    ok = httpx.post(
        http_server.url + "/generate",
        timeout=120,
        json={"input_ids": [5, 17], "sampling_params": {"max_new_tokens": 2, "temperature": 0}},
    )
    assert ok.status_code == 200 and len(ok.json()["output_ids"]) == 2


def test_context_overflow_is_a_400_the_evaluator_scores_as_failed(http_server, model_server):
    """OpenAI's client sees `context_length_exceeded`; our served evaluator's classification of
    the same body is `max_context` (a failed trial, not an aborted run)."""
    from eigen_jax.eval.served_agent import refusal_finish

    client = openai.OpenAI(base_url=f"{http_server.url}/v1", api_key="unused", max_retries=0)
    long_text = " ".join(["word"] * (2 * model_server.max_len))
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": long_text}])
    assert err.value.code == "context_length_exceeded"
    assert refusal_finish(400, err.value.response.text) == "max_context"
