"""Serving fixtures: a tiny random Qwen3 checkpoint with a tiny tokenizer in the same directory
(as `launch/serve.py` expects), one loaded `ModelServer`, and uvicorn serving it on a free port."""

from __future__ import annotations

import shutil

import pytest

VOCAB = 384
NUM_SLOTS = 4
MAX_LEN = 640


@pytest.fixture(scope="session")
def serve_checkpoint(tmp_path_factory):
    from eigen_jax.chat.tiny_tokenizer import train_tiny_tokenizer
    from tests.eigen_jax.chat import dialogues
    from tests.fixtures.tiny_hf import make_tiny_hf_checkpoint

    root = tmp_path_factory.mktemp("serve")
    tok_dir = root / "tokenizer"
    train_tiny_tokenizer(dialogues.corpus(), vocab_size=VOCAB, output_dir=tok_dir)
    ckpt = root / "tiny-qwen3"
    make_tiny_hf_checkpoint(str(ckpt), "qwen3", vocab_size=VOCAB, eos_token_id=2, bos_token_id=1)
    shutil.copytree(tok_dir, ckpt, dirs_exist_ok=True)
    return ckpt


@pytest.fixture(scope="session")
def model_server(serve_checkpoint):
    from eigen_jax.serve import ModelServer

    server = ModelServer.load(
        str(serve_checkpoint), num_slots=NUM_SLOTS, max_len=MAX_LEN, steps_per_sync=4
    )
    yield server
    server.close()


@pytest.fixture(scope="session")
def http_server(model_server):
    from eigen_jax.serve import BackgroundServer

    with BackgroundServer(model_server) as background:
        yield background


@pytest.fixture(scope="session")
def reference_model(serve_checkpoint):
    """The same checkpoint loaded on its own: the independent side of every parity check."""
    from eigen_jax import models

    return models.from_pretrained(str(serve_checkpoint))[0]
