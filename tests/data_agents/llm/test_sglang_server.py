"""LLMClient against the real sglang-jax server on the tiny random Qwen3.

References are independent of the server: token counts come from the HF tokenizer and its chat
template, logprobs from transformers' Qwen3ForCausalLM on the same checkpoint.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from data_agents.llm import LLMClient

pytestmark = pytest.mark.server

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "cancel_order",
            "description": "Cancel a pending order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def tokenizer(sglang_server):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(sglang_server.model_dir)


@pytest.fixture(scope="module")
def reference_logprobs(sglang_server):
    """log p(token_t | tokens_<t) for every position, from transformers on the same weights."""
    import torch
    from transformers import Qwen3ForCausalLM

    model = Qwen3ForCausalLM.from_pretrained(sglang_server.model_dir, dtype=torch.float32).eval()

    def compute(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        return torch.log_softmax(logits.double(), dim=-1).numpy()  # [len, vocab]

    return compute


def run(coro):
    return asyncio.run(coro)


def test_health_and_model_info(sglang_server):
    async def go():
        async with LLMClient(sglang_server.url) as llm:
            return await llm.health(), await llm.model_info()

    health, info = run(go())
    assert health == {sglang_server.url: True}
    assert info["model_path"] == str(sglang_server.model_dir)
    assert info["is_generation"] is True


def test_generate_text_matches_local_tokenizer(sglang_server, tokenizer):
    text = "Hello, how can I help you with your booking today?"

    async def go():
        async with LLMClient(sglang_server.url) as llm:
            return await llm.generate(
                text, sampling_params={"max_new_tokens": 6, "temperature": 0.0}
            ), llm.usage

    out, usage = run(go())
    assert out.prompt_tokens == len(tokenizer(text).input_ids)
    assert 1 <= out.completion_tokens == len(out.output_ids) <= 6
    assert out.text == tokenizer.decode(out.output_ids, skip_special_tokens=True)
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        out.prompt_tokens,
        out.completion_tokens,
    )


def test_generate_ids_logprobs_match_transformers(sglang_server, tokenizer, reference_logprobs):
    prompt = tokenizer("The quick brown fox jumps over the lazy dog.").input_ids

    async def go():
        async with LLMClient(sglang_server.url) as llm:
            return await llm.generate(
                input_ids=prompt,
                return_logprob=True,
                logprob_start_len=0,
                sampling_params={"max_new_tokens": 8, "temperature": 0.0, "ignore_eos": True},
            )

    out = run(go())
    assert len(out.output_ids) == 8 and out.finish_reason == "length"
    assert out.input_ids == prompt
    ref = reference_logprobs(prompt + out.output_ids)
    # Prompt: entry t scores prompt[t] given prompt[:t]; nothing predicts the first token.
    assert out.input_logprobs[0] is None
    want_in = [ref[t - 1, prompt[t]] for t in range(1, len(prompt))]
    np.testing.assert_allclose(out.input_logprobs[1:], want_in, atol=2e-3)
    # Completion: each token's logprob, and greedy means it is the reference argmax.
    steps = [len(prompt) - 1 + k for k in range(8)]
    want_out = [ref[s, tok] for s, tok in zip(steps, out.output_ids)]
    np.testing.assert_allclose(out.output_logprobs, want_out, atol=2e-3)
    np.testing.assert_allclose(want_out, [ref[s].max() for s in steps], atol=2e-3)


def test_chat_with_tools_uses_the_chat_template(sglang_server, tokenizer):
    messages = [
        {"role": "system", "content": "You are a helpful customer service agent."},
        {"role": "user", "content": "Please cancel order #W123."},
    ]

    async def go():
        async with LLMClient(sglang_server.url) as llm:
            return await llm.chat(
                messages, tools=TOOLS, tool_choice="auto", max_tokens=5, temperature=0.0
            )

    completion = run(go())
    # The server validates tools into its pydantic Tool model before rendering, which adds
    # `"strict": false` and orders the function's fields; render the same JSON locally.
    served_tools = [
        {
            "type": "function",
            "function": {
                "description": t["function"]["description"],
                "name": t["function"]["name"],
                "parameters": t["function"]["parameters"],
                "strict": False,
            },
        }
        for t in TOOLS
    ]
    want_prompt = tokenizer.apply_chat_template(
        messages, tools=served_tools, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    assert completion.usage.prompt_tokens == len(want_prompt)
    assert 1 <= completion.usage.completion_tokens <= 5
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in {"length", "stop", "tool_calls"}


def test_concurrent_requests_and_cache_on_rerun(sglang_server, tokenizer, tmp_path):
    prompts = [f"Please confirm order number {i} and the shipping address." for i in range(8)]
    params = {"max_new_tokens": 4, "temperature": 0.0, "ignore_eos": True}
    cache = tmp_path / "llm.sqlite"

    async def once():
        async with LLMClient(sglang_server.url, max_concurrency=4, cache=cache) as llm:
            outs = await asyncio.gather(*(llm.generate(p, sampling_params=params) for p in prompts))
            return outs, llm.usage, llm.cached_usage

    first, paid, cached = run(once())
    assert paid.requests == 8 and cached.requests == 0
    assert paid.prompt_tokens == sum(len(tokenizer(p).input_ids) for p in prompts)
    assert paid.completion_tokens == 8 * 4
    again, paid2, cached2 = run(once())  # a re-run: everything from the cache
    assert (paid2.requests, cached2.requests) == (0, 8)
    assert [o.output_ids for o in again] == [o.output_ids for o in first]
