"""Errors raised by the LLM client: each names the URL and the cause, so a failed run says why."""

from __future__ import annotations


class LLMError(RuntimeError):
    """Base class for every error the LLM client raises."""


class LLMHTTPError(LLMError):
    """The server answered with a non-retryable status (a 4xx: the request itself is wrong).

    Retrying cannot help, so it is raised at once with the server's explanation.
    """

    def __init__(self, url: str, status_code: int, body: str):
        self.url = url
        self.status_code = status_code
        self.body = body
        super().__init__(f"{url} answered HTTP {status_code}: {body[:1000]}")


class LLMUnavailableError(LLMError):
    """Every attempt failed with a transient cause (connection error, timeout, 5xx)."""

    def __init__(self, url: str, attempts: int, cause: str):
        self.url = url
        self.attempts = attempts
        self.cause = cause
        super().__init__(f"{url} failed after {attempts} attempt(s); last cause: {cause}")


class LLMResponseError(LLMError):
    """The server answered 200 but the body is not what the protocol promises."""
