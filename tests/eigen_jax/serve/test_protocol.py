"""Request models: neutral values of unsupported knobs pass, others are refused by name;
OpenAI content parts are flattened; a batch is recognised."""

import pydantic
import pytest

from eigen_jax.serve.protocol import ChatCompletionRequest, GenerateRequest


def test_neutral_knobs_accepted_and_others_named():
    req = GenerateRequest(
        input_ids=[1, 2],
        sampling_params={"frequency_penalty": 0.0, "repetition_penalty": 1.0, "n": 1, "top_k": -1},
    )
    assert req.sampling_params.top_k == -1 and not req.batched
    with pytest.raises(pydantic.ValidationError, match="repetition_penalty=1.2"):
        GenerateRequest(input_ids=[1], sampling_params={"repetition_penalty": 1.2})
    with pytest.raises(pydantic.ValidationError, match="top_logprobs"):
        ChatCompletionRequest(messages=[{"role": "user", "content": "x"}], top_logprobs=3)
    ChatCompletionRequest(
        messages=[{"role": "user", "content": "x"}],
        presence_penalty=0,
        logit_bias=None,
        stream=False,
    )


def test_content_parts_and_batches():
    req = ChatCompletionRequest(
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ]
    )
    assert req.messages[0]["content"] == "ab"
    assert req.parse_tool_calls  # calls are parsed whenever the model emits them, tools or not
    assert not ChatCompletionRequest(messages=req.messages, tool_choice="none").parse_tool_calls
    with pytest.raises(pydantic.ValidationError, match=r"messages\[0\].content\[0\]"):
        ChatCompletionRequest(messages=[{"role": "user", "content": [{"type": "image_url"}]}])
    assert GenerateRequest(input_ids=[[1, 2], [3]]).batched
    assert GenerateRequest(text=["a", "b"]).batched
    with pytest.raises(pydantic.ValidationError, match="non-empty"):
        GenerateRequest(input_ids=[[1], []])
    with pytest.raises(pydantic.ValidationError, match="stop strings"):
        GenerateRequest(text="a", sampling_params={"stop": ["", "x"]})
