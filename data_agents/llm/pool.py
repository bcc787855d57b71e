"""Pick a server for each request: least outstanding requests first, unhealthy servers skipped.

Why least-outstanding rather than plain round-robin: generation lengths vary by orders of
magnitude, so equal request counts do not mean equal load; the server with the fewest requests in
flight is the best cheap proxy for the shortest queue. Ties rotate round-robin.

Health is learned passively: a connection error, timeout or 5xx marks a server unhealthy for a
cooldown. After the cooldown the server is re-probed with ``GET /health`` before it gets traffic
again; a failed probe doubles its cooldown (capped). If every server is unhealthy the pool still
returns the one due back soonest, so the caller's retry/backoff loop, not the pool, decides when
to give up — a single-URL pool (e.g. an sglang-router) therefore behaves like a plain client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence


@dataclasses.dataclass
class ServerState:
    url: str
    outstanding: int = 0
    healthy: bool = True
    unhealthy_until: float = 0.0
    cooldown_s: float = 0.0
    failures: int = 0
    requests: int = 0
    probing: bool = False


def normalize_url(url: str) -> str:
    """Strip trailing slashes; reject anything that is not an http(s) base URL."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"server URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


class ServerPool:
    """Tracks in-flight counts and health of a fixed set of server base URLs.

    Args:
      urls: one or more base URLs (``http://host:port``); duplicates are rejected.
      probe: ``async probe(url) -> bool`` used to re-check an unhealthy server.
      cooldown_s: first cooldown after a failure; doubles per failed probe up to ``max_cooldown_s``.
      clock: injectable monotonic clock (tests).
    """

    def __init__(
        self,
        urls: Sequence[str],
        probe: Callable[[str], Awaitable[bool]],
        cooldown_s: float = 5.0,
        max_cooldown_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if isinstance(urls, str):
            urls = [urls]
        normalized = [normalize_url(u) for u in urls]
        if not normalized:
            raise ValueError("ServerPool needs at least one server URL")
        if len(set(normalized)) != len(normalized):
            raise ValueError(f"duplicate server URLs: {normalized}")
        if cooldown_s <= 0 or max_cooldown_s < cooldown_s:
            raise ValueError(
                f"need 0 < cooldown_s <= max_cooldown_s, got {cooldown_s}, {max_cooldown_s}"
            )
        self._servers = [ServerState(u) for u in normalized]
        self._probe = probe
        self._cooldown_s = cooldown_s
        self._max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._next = 0

    @property
    def servers(self) -> list[ServerState]:
        return list(self._servers)

    def _state(self, url: str) -> ServerState:
        for server in self._servers:
            if server.url == url:
                return server
        raise KeyError(f"{url} is not in this pool")

    async def _reprobe_due(self) -> None:
        """Probe every unhealthy server whose cooldown has passed (concurrently, once each)."""
        now = self._clock()
        due = [
            s for s in self._servers if not s.healthy and not s.probing and s.unhealthy_until <= now
        ]
        if not due:
            return
        for server in due:
            server.probing = True
        try:
            results = await asyncio.gather(
                *(self._probe(s.url) for s in due), return_exceptions=True
            )
        finally:
            for server in due:
                server.probing = False
        for server, ok in zip(due, results):
            if ok is True:
                server.healthy, server.failures, server.cooldown_s = True, 0, 0.0
            else:
                server.cooldown_s = min(
                    self._max_cooldown_s, max(server.cooldown_s, self._cooldown_s) * 2
                )
                server.unhealthy_until = self._clock() + server.cooldown_s

    async def acquire(self) -> str:
        """Choose a server for one request and count it as outstanding; pair with ``release``."""
        await self._reprobe_due()
        healthy = [s for s in self._servers if s.healthy]
        if healthy:
            n = len(self._servers)
            # Rotate the starting point so ties go round-robin.
            order = sorted(
                healthy, key=lambda s: (s.outstanding, (self._servers.index(s) - self._next) % n)
            )
            chosen = order[0]
            self._next = (self._servers.index(chosen) + 1) % n
        else:
            chosen = min(self._servers, key=lambda s: (s.unhealthy_until, s.outstanding))
        chosen.outstanding += 1
        chosen.requests += 1
        return chosen.url

    def release(self, url: str, ok: bool) -> None:
        """Finish a request; ``ok=False`` (transient failure) marks the server unhealthy."""
        server = self._state(url)
        server.outstanding = max(0, server.outstanding - 1)
        if ok:  # a success proves health, also for a server tried in the all-down fallback
            server.healthy, server.failures, server.cooldown_s = True, 0, 0.0
            return
        server.failures += 1
        if server.healthy:
            server.healthy = False
            server.cooldown_s = self._cooldown_s
        server.unhealthy_until = self._clock() + max(server.cooldown_s, self._cooldown_s)
