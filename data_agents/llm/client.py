"""Async client for SGLang servers (native and OpenAI-compatible routes) and OpenAI-compatible APIs.

Data synthesis makes hundreds of thousands of calls from long-running jobs, so the client is
built for that: bounded concurrency (a semaphore, so callers can ``gather`` freely), a per-attempt
timeout, retries with exponential backoff and jitter on transient failures only (connection
errors, timeouts, 5xx, and 408/429 throttling — never other 4xx, which mean the request is
wrong), several servers balanced by least outstanding requests with unhealthy ones skipped, an
on-disk response cache so a crashed run resumes without paying again, and token accounting.

    async with LLMClient(["http://h1:30000", "http://h2:30000"], cache="runs/llm.sqlite") as llm:
        out = await llm.generate("Hello", sampling_params={"max_new_tokens": 16})
        chat = await llm.chat([{"role": "user", "content": "hi"}], tools=tools)
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
import pydantic
from openai.types.chat import ChatCompletion

from data_agents.llm.cache import ResponseCache
from data_agents.llm.errors import LLMHTTPError, LLMResponseError, LLMUnavailableError
from data_agents.llm.pool import ServerPool, normalize_url
from data_agents.llm.types import GenerateOutput, TokenUsage

GENERATE_PATH = "/generate"
CHAT_PATH = "/v1/chat/completions"
HEALTH_PATH = "/health"
MODEL_INFO_PATH = "/get_model_info"
_THROTTLE_STATUSES = frozenset({408, 429})
T = TypeVar("T")
_MAX_RETRY_AFTER_S = 60.0  # honour a server's Retry-After, but never stall a worker longer


def _base_url(url: str) -> str:
    """Accept ``http://host:port`` or an OpenAI-style ``.../v1`` base; routes add ``/v1`` back."""
    url = normalize_url(url)
    return url.removesuffix("/v1")


def _parse_chat_completion(raw: Any) -> ChatCompletion:
    try:
        return ChatCompletion.model_validate(raw)
    except pydantic.ValidationError as err:
        raise LLMResponseError(f"{CHAT_PATH} response is not a chat completion: {err}") from err


class LLMClient:
    """One client for a fleet of servers (or one router / OpenAI-compatible endpoint).

    Args:
      urls: a base URL or a list of them (``http://host:port``); with an sglang-router, pass its URL.
      max_concurrency: requests in flight at once across all servers.
      timeout_s: limit for one HTTP attempt (connect + wait for the whole response).
      max_retries: extra attempts after the first on transient failures.
      backoff_base_s, backoff_max_s: retry ``k`` waits ``min(max, base * 2**k)`` scaled by a
        random factor in [0.5, 1] (jitter de-synchronises many workers hitting one server).
      cache: a ``ResponseCache``, a path to one, or None for no caching.
      api_key: sent as ``Authorization: Bearer`` (defaults to ``$OPENAI_API_KEY`` if set).
      model: default ``model`` field for chat requests (SGLang accepts any name).
      health_cooldown_s: how long a failing server is skipped before it is re-probed.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        max_concurrency: int = 32,
        timeout_s: float = 300.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        cache: ResponseCache | str | os.PathLike | None = None,
        api_key: str | None = None,
        model: str | None = None,
        health_cooldown_s: float = 5.0,
        headers: dict[str, str] | None = None,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff_base_s < 0 or backoff_max_s < backoff_base_s:
            raise ValueError(
                f"need 0 <= backoff_base_s <= backoff_max_s, got {backoff_base_s}, {backoff_max_s}"
            )
        url_list = [urls] if isinstance(urls, str) else list(urls)
        self.pool = ServerPool(
            [_base_url(u) for u in url_list], probe=self._probe, cooldown_s=health_cooldown_s
        )
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.model = model
        if cache is not None and not isinstance(cache, ResponseCache):
            cache = ResponseCache(cache)
        self.cache = cache
        self.usage = TokenUsage()
        self.cached_usage = TokenUsage()
        self._semaphore = asyncio.Semaphore(max_concurrency)
        all_headers = dict(headers or {})
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if api_key:
            all_headers.setdefault("Authorization", f"Bearer {api_key}")
        self._http = httpx.AsyncClient(
            headers=all_headers,
            timeout=httpx.Timeout(self.timeout_s),
            limits=httpx.Limits(
                max_connections=max_concurrency + 8, max_keepalive_connections=max_concurrency
            ),
        )

    # ----------------------------------------------------------------------------- lifecycle
    async def aclose(self) -> None:
        await self._http.aclose()
        if self.cache is not None:
            self.cache.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # ----------------------------------------------------------------------------- transport
    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        delay *= random.uniform(0.5, 1.0)
        if retry_after:
            try:
                delay = max(delay, min(_MAX_RETRY_AFTER_S, float(retry_after)))
            except ValueError:
                pass  # an HTTP-date Retry-After: keep our own backoff
        return delay

    async def request(self, method: str, path: str, payload: Any | None = None) -> Any:
        """Send one request with balancing and retries; return the decoded JSON body.

        Raises LLMHTTPError at once on a non-retryable 4xx, LLMUnavailableError when every
        attempt failed transiently, LLMResponseError when a 2xx body is not JSON.
        """
        cause, url, retry_after = "no attempt made", "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff(attempt - 1, retry_after))
            retry_after = None
            async with self._semaphore:
                server = await self.pool.acquire()
                url = server + path
                try:
                    # httpx's timeout bounds each read; this bounds the whole attempt (a body
                    # trickled a byte at a time would otherwise hold it for ever).
                    response = await asyncio.wait_for(
                        self._http.request(method, url, json=payload), self.timeout_s
                    )
                except (httpx.TimeoutException, TimeoutError) as err:
                    self.pool.release(server, ok=False)
                    cause = f"timed out after {self.timeout_s:g}s ({type(err).__name__})"
                    continue
                except httpx.TransportError as err:
                    self.pool.release(server, ok=False)
                    cause = f"{type(err).__name__}: {err}"
                    continue
                status = response.status_code
                if status < 400:
                    self.pool.release(server, ok=True)
                    try:
                        return response.json()
                    except ValueError as err:
                        raise LLMResponseError(
                            f"{method} {url} answered {status} with a non-JSON body: "
                            f"{response.text[:300]!r}"
                        ) from err
                # Throttling is the server being busy, not broken: retry, but keep routing to it.
                self.pool.release(server, ok=status < 500)
                if status < 500 and status not in _THROTTLE_STATUSES:
                    raise LLMHTTPError(f"{method} {url}", status, response.text)
                cause = f"HTTP {status}: {response.text[:300]}"
                retry_after = response.headers.get("retry-after")
        raise LLMUnavailableError(f"{method} {url}", self.max_retries + 1, cause)

    async def _cached_post(
        self,
        path: str,
        payload: dict,
        use_cache: bool,
        cache_tag: str | None,
        parse: Callable[[Any], T],
    ) -> tuple[T, bool]:
        """POST through the cache; returns (parsed response, was_cache_hit).

        A response is parsed before it is stored, so a malformed answer is never cached.
        """
        key_payload = payload if cache_tag is None else {"payload": payload, "cache_tag": cache_tag}
        if use_cache and self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, path, key_payload)
            if hit is not None:
                return parse(hit), True
        response = await self.request("POST", path, payload)
        parsed = parse(response)
        if use_cache and self.cache is not None:
            await asyncio.to_thread(self.cache.put, path, key_payload, response)
        return parsed, False

    async def _probe(self, server: str) -> bool:
        try:
            response = await self._http.get(server + HEALTH_PATH, timeout=min(self.timeout_s, 10.0))
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # ----------------------------------------------------------------------------- endpoints
    async def health(self) -> dict[str, bool]:
        """``GET /health`` on every server (no retries): {url: healthy}."""
        urls = [s.url for s in self.pool.servers]
        results = await asyncio.gather(*(self._probe(u) for u in urls))
        return dict(zip(urls, results))

    async def model_info(self) -> dict:
        """SGLang's ``GET /get_model_info`` (model path, tokenizer path, is_generation, ...)."""
        info = await self.request("GET", MODEL_INFO_PATH)
        if not isinstance(info, dict):
            raise LLMResponseError(f"{MODEL_INFO_PATH} returned {info!r:.300}, expected an object")
        return info

    async def generate(
        self,
        text: str | None = None,
        *,
        input_ids: Sequence[int] | None = None,
        sampling_params: dict | None = None,
        return_logprob: bool = False,
        use_cache: bool = True,
        cache_tag: str | None = None,
        **extra: Any,
    ) -> GenerateOutput:
        """SGLang native ``POST /generate`` for one prompt, given as text or token ids.

        ``extra`` passes further request fields through (``logprob_start_len``, ``stop``...).
        ``cache_tag`` distinguishes otherwise identical requests (e.g. the k-th sample of a
        prompt at temperature > 0) in the cache without changing what is sent.
        """
        if (text is None) == (input_ids is None):
            raise ValueError("generate() needs exactly one of text= or input_ids=")
        payload: dict[str, Any] = {"sampling_params": dict(sampling_params or {})}
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"text must be a str, got {type(text).__name__}")
            payload["text"] = text
        else:
            ids = list(input_ids)
            if not ids or not all(isinstance(t, int) and t >= 0 for t in ids):
                raise ValueError("input_ids must be a non-empty sequence of non-negative ints")
            payload["input_ids"] = ids
        if return_logprob:
            payload["return_logprob"] = True
        payload.update(extra)
        out, hit = await self._cached_post(
            GENERATE_PATH, payload, use_cache, cache_tag, GenerateOutput.from_response
        )
        (self.cached_usage if hit else self.usage).add(out.prompt_tokens, out.completion_tokens)
        return out

    async def chat(
        self,
        messages: Sequence[dict],
        *,
        tools: Sequence[dict] | None = None,
        tool_choice: str | dict | None = None,
        model: str | None = None,
        use_cache: bool = True,
        cache_tag: str | None = None,
        **params: Any,
    ) -> ChatCompletion:
        """OpenAI-compatible ``POST /v1/chat/completions`` (works against any such endpoint).

        ``params`` are further request fields (``temperature``, ``max_tokens``, ``logprobs``...).
        """
        if not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError("messages must be a non-empty list of dicts, each with a 'role'")
        payload: dict[str, Any] = {
            "model": model or self.model or "default",
            "messages": list(messages),
        }
        if tools is not None:
            payload["tools"] = list(tools)
        if tool_choice is not None:
            if tools is None:
                raise ValueError("tool_choice given without tools")
            payload["tool_choice"] = tool_choice
        payload.update(params)
        completion, hit = await self._cached_post(
            CHAT_PATH, payload, use_cache, cache_tag, _parse_chat_completion
        )
        usage = completion.usage
        (self.cached_usage if hit else self.usage).add(
            usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0
        )
        return completion
