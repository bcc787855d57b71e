"""Fixtures for the LLM client tests: fake servers (per test) and the real sglang-jax server."""

from __future__ import annotations

import pytest

from tests.data_agents.llm.fake_server import FakeServer


@pytest.fixture
def fake_server():
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def fake_servers():
    servers = [FakeServer(), FakeServer()]
    yield servers
    for server in servers:
        server.close()
