"""The real sglang-jax server fixture, defined once for all data_agents tests (one server)."""

from tests.fixtures.sglang_server import sglang_server  # noqa: F401  (package-scoped fixture)
