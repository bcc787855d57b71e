"""Wire formats of the served routes: SGLang's native `/generate` and OpenAI chat completions.

Requests are pydantic models with `extra="forbid"`: a field we do not implement is rejected with
a 400 naming it instead of being silently ignored (a client asking for `min_p=0.1` must not get
unfiltered samples back). Knobs some clients always send at their neutral value
(`frequency_penalty=0`, `n=1`, ...) are accepted at exactly that value. Responses mirror the
fields `data_agents.llm.LLMClient`, the `openai` package and SGLang clients read.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from eigen_jax.chat import messages as messages_lib

# Fields accepted only at their neutral value: we implement no such filter or penalty.
_NEUTRAL_SAMPLING = {
    "min_p": 0.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "repetition_penalty": 1.0,
    "min_new_tokens": 0,
    "n": 1,
}
_NEUTRAL_CHAT = {
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "n": 1,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "logit_bias": None,
    "response_format": None,
    "stream_options": None,
    "top_logprobs": 0,
}


# The engine holds counts and token ids in int32 arrays: a larger value must be a 400 naming the
# field here, not an overflow inside the engine loop. Floats must be finite.
INT32_MAX = 2**31 - 1
Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
TokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]
Count = Annotated[int, Field(ge=1, le=INT32_MAX)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


def _drop_neutral(data: Any, neutral: dict[str, Any]) -> Any:
    """Remove knobs set to their neutral value; any other value names the unsupported field."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for name, value in neutral.items():
        if name in data:
            given = data.pop(name)
            if given is not None and given != value and given != {}:
                raise ValueError(f"{name}={given!r} is not supported (only {value!r})")
    return data


def _as_stop_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    values = [value] if isinstance(value, str) else list(value)
    if any(v == "" for v in values):
        raise ValueError("stop strings must not be empty")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateSamplingParams(_Strict):
    """SGLang `sampling_params`; `top_k=-1` (SGLang's "off") and `0` both disable top-k."""

    temperature: Finite = Field(1.0, ge=0.0)
    top_p: Finite = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1, le=INT32_MAX)
    max_new_tokens: Count = 128
    stop: str | list[str] | None = None
    stop_token_ids: list[TokenId] | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    no_stop_trim: bool = False
    sampling_seed: int | None = Field(None, ge=0, lt=2**32)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _neutral(cls, data):
        return _drop_neutral(data, _NEUTRAL_SAMPLING)

    @pydantic.field_validator("stop")
    @classmethod
    def _check_stop(cls, value):
        return _as_stop_list(value)

    @pydantic.field_validator("stop_token_ids")
    @classmethod
    def _check_stop_ids(cls, value):
        if value and any(t < 0 for t in value):
            raise ValueError(f"token ids must be non-negative, got {value}")
        return value


class GenerateRequest(_Strict):
    """SGLang native `POST /generate`: one prompt (text or ids) or a batch (a list of them)."""

    text: str | list[str] | None = None
    input_ids: list[TokenId] | list[list[TokenId]] | None = None
    sampling_params: GenerateSamplingParams = Field(default_factory=GenerateSamplingParams)
    return_logprob: bool = False
    logprob_start_len: Int32 = -1
    top_logprobs_num: Int32 = 0
    return_text_in_logprobs: bool = False
    stream: bool = False
    rid: str | list[str] | None = None

    @pydantic.model_validator(mode="after")
    def _check(self):
        if (self.text is None) == (self.input_ids is None):
            raise ValueError("give exactly one of text or input_ids")
        if self.stream:
            raise ValueError("stream=true is not supported; send stream=false")
        if self.logprob_start_len != -1:
            raise ValueError("logprob_start_len: prompt logprobs are not supported (only -1)")
        if self.top_logprobs_num != 0:
            raise ValueError("top_logprobs_num: top logprobs are not supported (only 0)")
        if isinstance(self.input_ids, list) and not self.input_ids:
            raise ValueError("input_ids must not be empty")
        if self.batched and isinstance(self.input_ids, list) and any(not p for p in self.input_ids):
            raise ValueError("input_ids: every prompt must be non-empty")
        if self.text is not None and (self.text == "" or self.text == []):
            raise ValueError("text must not be empty")
        return self

    @property
    def batched(self) -> bool:
        prompts = self.text if self.text is not None else self.input_ids
        return isinstance(prompts, list) and bool(prompts) and isinstance(prompts[0], (str, list))


class ChatCompletionRequest(_Strict):
    """OpenAI `POST /v1/chat/completions` (non-streaming, one choice, tool_choice auto/none)."""

    model: str | None = None
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["auto", "none"] | None = None
    parallel_tool_calls: bool | None = None
    temperature: Finite | None = Field(None, ge=0.0)
    top_p: Finite | None = Field(None, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1, le=INT32_MAX)
    max_tokens: Count | None = None
    max_completion_tokens: Count | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, lt=2**32)
    logprobs: bool = False
    stream: bool = False
    user: str | None = None

    @pydantic.model_validator(mode="before")
    @classmethod
    def _neutral(cls, data):
        return _drop_neutral(data, _NEUTRAL_CHAT)

    @pydantic.field_validator("messages")
    @classmethod
    def _check_messages(cls, value):
        if not value:
            raise ValueError("messages must not be empty")
        value = [_flatten_content(m, i) for i, m in enumerate(value)]
        messages_lib.to_template_messages(value)  # raises naming messages[i].field
        return value

    @pydantic.field_validator("tools")
    @classmethod
    def _check_tools(cls, value):
        return messages_lib.validate_tools(value)

    @pydantic.field_validator("stop")
    @classmethod
    def _check_stop(cls, value):
        return _as_stop_list(value)

    @pydantic.model_validator(mode="after")
    def _check(self):
        if self.stream:
            raise ValueError("stream=true is not supported; send stream=false")
        return self

    @property
    def parse_tool_calls(self) -> bool:
        """Whenever the model emits a call (tools sent or not: a model trained with the compact
        prompt calls tools it was never shown), unless the client asked for none."""
        return self.tool_choice != "none"


def _flatten_content(message: dict[str, Any], index: int) -> dict[str, Any]:
    """OpenAI content parts [{"type": "text", "text": ...}] -> one string (text parts only)."""
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return message
    texts = []
    for j, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or part.get("type") != "text"
            or not isinstance(part.get("text"), str)
        ):
            raise ValueError(f"messages[{index}].content[{j}]: only text parts are supported")
        texts.append(part["text"])
    return {**message, "content": "".join(texts)}


# ------------------------------------------------------------------ responses
class GenerateResponse(BaseModel):
    text: str
    output_ids: list[int]
    meta_info: dict[str, Any]


class FunctionCall(BaseModel):
    name: str
    arguments: str  # a JSON string, as OpenAI sends it


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None
    reasoning_content: str | None = None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[dict[str, Any]] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: ChoiceLogprobs | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
