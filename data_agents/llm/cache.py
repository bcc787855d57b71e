"""On-disk request→response cache, so a re-run after a crash does not pay for finished calls.

SQLite in WAL mode: each stored response is its own committed transaction (a crash loses at most
the call in flight), many processes may read and write the same file concurrently (writers wait
on ``busy_timeout`` instead of failing), and one file is easy to copy or delete.

The key is a SHA-256 of the endpoint path, a caller-chosen namespace and the canonical JSON of
the payload (sorted keys). The server URL is deliberately *not* part of the key: the same request
sent to any replica behind a balancer or router is the same request.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sqlite3
import threading
import time
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def canonical_json(payload: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces); raises TypeError naming a non-JSON value."""
    try:
        return json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as err:
        raise TypeError(f"LLM request payload is not JSON-serialisable: {err}") from err


def cache_key(endpoint: str, payload: Any, namespace: str = "") -> str:
    """The hex digest that identifies ``payload`` sent to ``endpoint`` (e.g. "/generate")."""
    material = "\x1f".join([namespace, endpoint, canonical_json(payload)])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class ResponseCache:
    """A persistent map from (namespace, endpoint, payload) to the server's JSON response.

    Args:
      path: SQLite file; parent directories are created.
      namespace: mixed into every key. Use it to keep caches of different models apart when the
        payload does not name the model (``/generate`` payloads do not).
    """

    def __init__(self, path: str | os.PathLike, namespace: str = ""):
        self.path = pathlib.Path(path)
        self.namespace = namespace
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=60000")
            self._conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise ValueError(f"{self.path} is not a usable SQLite response cache: {err}") from err

    def key(self, endpoint: str, payload: Any) -> str:
        return cache_key(endpoint, payload, self.namespace)

    def get(self, endpoint: str, payload: Any) -> Any | None:
        """The stored response, or None on a miss."""
        key = self.key(endpoint, payload)
        with self._lock:
            row = self._conn.execute(
                "SELECT response FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, endpoint: str, payload: Any, response: Any) -> None:
        """Store (or overwrite) a response; committed before returning."""
        key = self.key(endpoint, payload)
        record = (key, endpoint, canonical_json(payload), canonical_json(response), time.time())
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses (key, endpoint, request, response, created) "
                "VALUES (?, ?, ?, ?, ?)",
                record,
            )

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
