"""Reaching LLMs over HTTP: SGLang native and OpenAI-compatible servers, balanced, retried, cached.

Everything in ``data_agents`` (and ``eigen_jax``'s served user simulator) talks to models only
through this package, so one place owns timeouts, retries, server health and the response cache.
"""

from data_agents.llm.cache import ResponseCache, cache_key
from data_agents.llm.client import LLMClient
from data_agents.llm.errors import LLMError, LLMHTTPError, LLMResponseError, LLMUnavailableError
from data_agents.llm.pool import ServerPool
from data_agents.llm.types import GenerateOutput, TokenUsage
from data_agents.llm.work_split import owns, shard, worker_from_env

__all__ = [
    "GenerateOutput",
    "LLMClient",
    "LLMError",
    "LLMHTTPError",
    "LLMResponseError",
    "LLMUnavailableError",
    "ResponseCache",
    "ServerPool",
    "TokenUsage",
    "cache_key",
    "owns",
    "shard",
    "worker_from_env",
]
