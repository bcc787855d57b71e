"""The HTTP app (FastAPI on uvicorn): SGLang-native and OpenAI-compatible routes over a
`ModelServer`.

Routes: `POST /generate`, `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`,
`GET /get_model_info`. Every client error is a 400 whose message names the offending field
(in OpenAI's error shape, which the `openai` package surfaces as `BadRequestError`); an engine
that is down answers 503 so `LLMClient` retries elsewhere. This module routes only: the work is
in `ModelServer`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Self

import fastapi
import uvicorn
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from eigen_jax.chat.messages import MessageError
from eigen_jax.chat.template import TemplateError
from eigen_jax.serve import protocol
from eigen_jax.serve.engine_loop import EngineFailure, RequestError
from eigen_jax.serve.server import BadRequest, ContextLengthExceeded, ModelServer


def _error(
    status: int, message: str, kind: str, param: str | None = None, code: str | int | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={
            "object": "error",
            "message": message,
            "type": kind,
            "code": status,
            "error": {"message": message, "type": kind, "param": param, "code": code or status},
        },
    )


def _describe(err: dict[str, Any]) -> tuple[str, str | None]:
    """One pydantic error -> ("field.path: what is wrong", "field.path")."""
    loc = [str(x) for x in err.get("loc", ()) if x != "body"]
    # Union members add their type name to the path (e.g. "str", "list[int]"); drop them.
    loc = [x for x in loc if not any(c in x for c in "[]") and x not in ("str", "int", "list")]
    field = ".".join(loc) or None
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{field}: {msg}" if field else msg), field


def create_app(server: ModelServer) -> fastapi.FastAPI:
    """The FastAPI app serving `server`; closing the app (lifespan end) stops its engine loop."""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        server.close()

    app = fastapi.FastAPI(title="eigen-jax server", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc: RequestValidationError):
        described = [_describe(e) for e in exc.errors()]
        message = "; ".join(dict.fromkeys(m for m, _ in described))
        return _error(400, message, "invalid_request_error", described[0][1] if described else None)

    @app.exception_handler(ContextLengthExceeded)
    async def _too_long(_request, exc: ContextLengthExceeded):
        return _error(400, str(exc), "invalid_request_error", "messages", "context_length_exceeded")

    @app.exception_handler(BadRequest)
    @app.exception_handler(RequestError)
    @app.exception_handler(MessageError)
    @app.exception_handler(TemplateError)
    async def _bad(_request, exc: ValueError):
        return _error(400, str(exc), "invalid_request_error")

    @app.exception_handler(EngineFailure)
    async def _down(_request, exc: EngineFailure):
        return _error(503, str(exc), "server_error")

    @app.post("/generate")
    async def generate(request: protocol.GenerateRequest):
        return await server.generate(request)

    @app.post("/v1/chat/completions")
    async def chat_completions(
        request: protocol.ChatCompletionRequest,
    ) -> protocol.ChatCompletionResponse:
        return await server.chat_completion(request)

    @app.get("/v1/models")
    async def models():
        return server.models_list()

    @app.get("/health")
    async def health():
        if not server.loop.healthy:
            return _error(503, "engine loop is not running", "server_error")
        return {}

    @app.get("/get_model_info")
    async def model_info():
        return server.model_info()

    return app


def serve(
    server: ModelServer, host: str = "127.0.0.1", port: int = 30000, log_level: str = "info"
) -> None:
    """Serve until interrupted (blocking). A port outside 1..65535 is refused here: uvicorn would
    report it as served and listen elsewhere (the OS truncates it to 16 bits)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an integer in 1..65535, got {port!r}")
    uvicorn.run(create_app(server), host=host, port=port, log_level=log_level)


class BackgroundServer:
    """uvicorn in a daemon thread on an already-bound socket (port 0 = a free port): for tests,
    notebooks and in-process evaluation."""

    def __init__(
        self,
        server: ModelServer,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(create_app(server), log_level=log_level, lifespan="on")
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if self._uvicorn.started:
                return self
            if not self._thread.is_alive():
                break
            deadline.wait(0.05)
        raise RuntimeError(f"uvicorn did not start on {self.url} within {timeout:g}s")

    def stop(self, timeout: float = 30.0) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
