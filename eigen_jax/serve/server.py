"""`ModelServer`: a loaded checkpoint (model, tokenizer, chat template) behind an `EngineLoop`.

It owns everything between a validated request and its response body: tokenizing (text or chat
messages via the model's own chat template), mapping request knobs to `SamplingParams`, waiting
for the engine, and building the response. The HTTP layer (`app.py`) only routes.

Defaults follow SGLang: decoding stops at the model's end-of-turn / eos ids unless `ignore_eos`;
a request without a seed gets a fresh random one, so repeated sampled requests differ (greedy is
unaffected).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from eigen_jax.chat import prompt_format as prompt_format_lib
from eigen_jax.chat.prompt_format import PromptFormat
from eigen_jax.chat.template import ChatTemplate, TemplateError
from eigen_jax.sampling.engine import Completion, Engine
from eigen_jax.sampling.params import SamplingParams
from eigen_jax.serve import protocol, responses
from eigen_jax.serve.engine_loop import EngineLoop

MAX_STOP_IDS = 16


class CheckpointError(ValueError):
    """The checkpoint directory cannot be served; the text says what is missing or broken."""


class BadRequest(ValueError):
    """A request the server cannot honour; the text names the offending field."""


class ContextLengthExceeded(BadRequest):
    """The prompt leaves no room to generate within `max_len`: a 400 with OpenAI's
    `context_length_exceeded` code, so clients (litellm, our evaluator) see a context overflow."""


def check_checkpoint_dir(path: str | os.PathLike) -> str:
    """Cheap structural checks (no jax import) so a wrong path fails in one clear line."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"checkpoint directory {path!r} does not exist")
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        raise CheckpointError(f"checkpoint {path!r} has no config.json")
    try:
        with open(config) as f:
            json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path!r}: config.json is not valid JSON ({err})"
        ) from err
    if not any(name.endswith(".safetensors") for name in os.listdir(path)):
        raise CheckpointError(f"checkpoint {path!r} has no *.safetensors weights")
    if not any(
        os.path.isfile(os.path.join(path, n)) for n in ("tokenizer.json", "tokenizer_config.json")
    ):
        raise CheckpointError(f"checkpoint {path!r} has no tokenizer (tokenizer.json)")
    return os.path.abspath(path)


def load_model(checkpoint: str, dtype: str | None = None):
    """`models.from_pretrained` with every failure turned into a `CheckpointError`."""
    import jax.numpy as jnp
    from safetensors import SafetensorError

    from eigen_jax import models

    kwargs = {} if dtype is None else {"dtype": jnp.dtype(dtype), "param_dtype": jnp.dtype(dtype)}
    try:
        return models.from_pretrained(checkpoint, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise CheckpointError(
            f"cannot load checkpoint {checkpoint!r}: {type(err).__name__}: {err}"
        ) from err


def load_chat(checkpoint: str, tool_parser: str = "hermes") -> ChatTemplate:
    try:
        return ChatTemplate.from_pretrained(checkpoint, tool_parser=tool_parser)
    except (OSError, ValueError, KeyError, TemplateError) as err:
        raise CheckpointError(
            f"cannot load the tokenizer of {checkpoint!r}: {type(err).__name__}: {err}"
        ) from err


class ModelServer:
    """One model served from one `EngineLoop`; `generate` / `chat` are the route handlers' work."""

    def __init__(
        self,
        loop: EngineLoop,
        chat: ChatTemplate,
        *,
        model_name: str,
        model_path: str = "",
        tool_parser: str = "hermes",
        tokenizer_lock: threading.Lock | None = None,
        prompt_format: PromptFormat | None = None,
    ):
        self.loop, self.chat = loop, chat
        self.prompt_format = prompt_format or PromptFormat(tool_parser=tool_parser)
        self.model_name, self.model_path, self.tool_parser = model_name, model_path, tool_parser
        self.max_len = loop.engine.max_len
        self.created = int(time.time())
        # HF fast tokenizers must not encode/decode concurrently (Rust "Already borrowed"); the
        # engine thread's stop-string detokenizer shares this lock.
        self._tok_lock = tokenizer_lock or threading.Lock()

    @classmethod
    def load(
        cls,
        checkpoint: str,
        *,
        num_slots: int = 8,
        max_len: int | None = None,
        model_name: str | None = None,
        dtype: str | None = None,
        tool_parser: str | None = None,
        steps_per_sync: int = 8,
        max_prefill_len: int = 512,
    ) -> ModelServer:
        """Load `checkpoint` (HF config + safetensors + tokenizer) and start the engine loop.

        `max_len` (prompt + generation per request) defaults to the model's own context
        (`max_position_embeddings`): a smaller default refused tau2's prompts (policy + tool
        schemas) that the model itself could read."""
        checkpoint = check_checkpoint_dir(checkpoint)
        try:
            fmt = prompt_format_lib.read(checkpoint) or PromptFormat()
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        if tool_parser is not None:  # an explicit choice overrides the recorded syntax
            fmt = dataclasses.replace(fmt, tool_parser=tool_parser)
        tool_parser = fmt.tool_parser
        chat = load_chat(checkpoint, tool_parser)
        model, config = load_model(checkpoint, dtype)
        if len(chat.tokenizer) > config.vocab_size:
            raise CheckpointError(
                f"tokenizer has {len(chat.tokenizer)} ids but the model only "
                f"{config.vocab_size}; they do not belong together"
            )
        max_len = max_len or config.max_position_embeddings
        if max_len < 2:
            raise CheckpointError(f"max_len must be >= 2, got {max_len}")
        lock = threading.Lock()

        def decode_fn(ids):
            with lock:
                return chat.tokenizer.decode(list(ids), skip_special_tokens=False)

        engine = Engine(
            model,
            num_slots,
            max_len,
            decode_fn=decode_fn,
            steps_per_sync=steps_per_sync,
            max_prefill_len=max_prefill_len,
            max_stop_ids=MAX_STOP_IDS,
        )
        return cls(
            EngineLoop(engine).start(),
            chat,
            model_name=model_name or os.path.basename(checkpoint.rstrip("/")),
            model_path=checkpoint,
            tool_parser=tool_parser,
            tokenizer_lock=lock,
            prompt_format=fmt,
        )

    def close(self) -> None:
        self.loop.close()

    # ------------------------------------------------------------------ tokenizer
    def encode(self, text: str) -> list[int]:
        with self._tok_lock:
            return list(self.chat.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        with self._tok_lock:
            return self.chat.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def _check_prompt(self, ids: Sequence[int], field: str) -> None:
        if len(ids) >= self.max_len:
            raise ContextLengthExceeded(
                f"{field}: prompt of {len(ids)} tokens leaves no room "
                f"to generate within the server's context "
                f"(max_len={self.max_len}); this model's context length "
                f"is exceeded"
            )
        vocab = self.loop.engine.vocab_size
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise BadRequest(f"{field}: token ids {bad[:5]} are outside [0, {vocab})")

    def _stop_ids(self, extra: Sequence[int] | None, ignore_eos: bool) -> tuple[int, ...]:
        stops = [] if ignore_eos else list(self.chat.stop_ids)
        stops += list(extra or [])
        stops = list(dict.fromkeys(stops))
        if len(stops) > MAX_STOP_IDS:
            raise BadRequest(
                f"stop_token_ids: at most {MAX_STOP_IDS} stop ids (including the "
                f"model's own) are supported, got {len(stops)}"
            )
        return tuple(stops)

    async def _run(self, ids: list[int], params: SamplingParams, seed: int) -> Completion:
        future = self.loop.submit(ids, params, seed)
        return await asyncio.wrap_future(future)  # cancellation propagates and frees the slot

    # ------------------------------------------------------------------ routes
    async def generate(
        self, request: protocol.GenerateRequest
    ) -> protocol.GenerateResponse | list[protocol.GenerateResponse]:
        start = time.perf_counter()
        sp = request.sampling_params
        if request.text is not None:
            field = "text"
            texts = request.text if isinstance(request.text, list) else [request.text]
            prompts = [self.encode(t) for t in texts]
        else:
            field = "input_ids"
            prompts = request.input_ids if request.batched else [request.input_ids]
        for i, ids in enumerate(prompts):
            self._check_prompt(ids, f"{field}[{i}]" if request.batched else field)
        params = SamplingParams(
            temperature=sp.temperature,
            top_k=max(sp.top_k, 0),
            top_p=sp.top_p,
            max_new_tokens=sp.max_new_tokens,
            stop_strings=tuple(sp.stop or ()),
            stop_token_ids=self._stop_ids(sp.stop_token_ids, sp.ignore_eos),
        )
        rids = request.rid if isinstance(request.rid, list) else [request.rid] * len(prompts)
        if len(rids) != len(prompts):
            raise BadRequest(f"rid: {len(rids)} ids for {len(prompts)} prompts")
        base_seed = sp.sampling_seed if sp.sampling_seed is not None else secrets.randbits(32)
        completions = await asyncio.gather(
            *(
                self._run(list(ids), params, (base_seed + i) % 2**32)
                for i, ids in enumerate(prompts)
            )
        )
        latency = time.perf_counter() - start
        out = [
            responses.generate_response(
                c,
                decode=self.decode,
                request_id=rid or uuid.uuid4().hex,
                prompt_tokens=len(ids),
                return_logprob=request.return_logprob,
                return_text_in_logprobs=request.return_text_in_logprobs,
                skip_special_tokens=sp.skip_special_tokens,
                no_stop_trim=sp.no_stop_trim,
                latency_s=latency,
            )
            for c, ids, rid in zip(completions, prompts, rids)
        ]
        return out if request.batched else out[0]

    def render_chat(self, request: protocol.ChatCompletionRequest) -> list[int]:
        """The request rendered as the checkpoint was trained (`prompt_format.json`)."""
        messages, tools = self.prompt_format.render_messages(request.messages, request.tools)
        with self._tok_lock:
            return self.chat.render(messages, tools, add_generation_prompt=True)

    async def chat_completion(
        self, request: protocol.ChatCompletionRequest
    ) -> protocol.ChatCompletionResponse:
        ids = self.render_chat(request)
        self._check_prompt(ids, "messages")
        max_new = request.max_completion_tokens or request.max_tokens or self.max_len - len(ids)
        params = SamplingParams(
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            top_k=max(request.top_k, 0),
            max_new_tokens=max_new,
            stop_strings=tuple(request.stop or ()),
            stop_token_ids=self._stop_ids(None, False),
        )
        seed = request.seed if request.seed is not None else secrets.randbits(32)
        completion = await self._run(ids, params, seed)
        with self._tok_lock:
            return responses.chat_response(
                completion,
                self.chat,
                model=request.model or self.model_name,
                request_id=f"chatcmpl-{uuid.uuid4().hex}",
                created=int(time.time()),
                prompt_tokens=len(ids),
                parse_tool_calls=request.parse_tool_calls,
                logprobs=request.logprobs,
            )

    # ------------------------------------------------------------------ info
    def model_info(self) -> dict[str, Any]:
        """SGLang's `/get_model_info` fields, plus the serving limits."""
        return {
            "model_path": self.model_path,
            "tokenizer_path": self.model_path,
            "is_generation": True,
            "served_model_name": self.model_name,
            "max_len": self.max_len,
            "num_slots": self.loop.engine.num_slots,
            "tool_call_parser": self.tool_parser,
            "prompt_format": dataclasses.asdict(self.prompt_format),
            "stats": self.loop.stats(),
        }

    def models_list(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model_name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "eigen-jax",
                    "root": self.model_path,
                    "max_model_len": self.max_len,
                }
            ],
        }
