"""Chat-layer fixtures: the real Qwen3 template (from npm) and a tiny tokenizer trained here."""

from __future__ import annotations

import pytest

from tests.fixtures.qwen3_tokenizer import qwen3_tokenizer_dir  # noqa: F401  (pytest fixture)

from . import dialogues


@pytest.fixture(scope="session")
def qwen3_chat(qwen3_tokenizer_dir):  # noqa: F811
    from eigen_jax.chat.template import ChatTemplate

    return ChatTemplate.from_pretrained(qwen3_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from eigen_jax.chat.tiny_tokenizer import train_tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny_tokenizer")
    train_tiny_tokenizer(dialogues.corpus(), vocab_size=640, output_dir=out)
    return out


@pytest.fixture(scope="session")
def tiny_chat(tiny_tokenizer_dir):
    from eigen_jax.chat.template import ChatTemplate

    return ChatTemplate.from_pretrained(tiny_tokenizer_dir)
