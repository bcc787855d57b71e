"""Serving an eigen-jax / HF checkpoint over SGLang's native `/generate` and the OpenAI chat
protocol, with continuous batching of concurrent requests (see docs/serving.md)."""

from eigen_jax.serve.app import BackgroundServer, create_app, serve
from eigen_jax.serve.engine_loop import EngineFailure, EngineLoop, RequestError
from eigen_jax.serve.export import export_checkpoint, sglang_commands
from eigen_jax.serve.server import BadRequest, CheckpointError, ModelServer, check_checkpoint_dir

__all__ = [
    "BackgroundServer",
    "BadRequest",
    "CheckpointError",
    "EngineFailure",
    "EngineLoop",
    "ModelServer",
    "RequestError",
    "check_checkpoint_dir",
    "create_app",
    "export_checkpoint",
    "serve",
    "sglang_commands",
]
