"""Durable, append-only JSONL journal: every record is flushed and fsynced before `append` returns.

A crash (even SIGKILL) can at worst leave one partial last line; opening the journal drops that
torn tail, so a restart sees exactly the records that were fully written and can skip their keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from etils import epath

from data_agents.records import DialogueRecord


class Journal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._keys = {r["key"] for r in self._iter_json()}
        self._fh = open(self.path, "a", encoding="utf-8")

    def _repair_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1  # keep every complete line
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())

    def _iter_json(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{self.path}:{n}: corrupt journal line: {e}") from e

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> set[str]:
        return set(self._keys)

    def append(self, record: DialogueRecord) -> bool:
        """Write one record durably. Returns False (and writes nothing) if its key is present."""
        if record.key in self._keys:
            return False
        self._fh.write(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._keys.add(record.key)
        return True

    def records(self) -> Iterator[DialogueRecord]:
        for d in self._iter_json():
            yield DialogueRecord.from_json(d)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_records(path: str | os.PathLike) -> Iterator[DialogueRecord]:
    """Read a journal without opening it for writing (a torn last line is ignored); `path` may
    be a URL (`gs://...`, through `etils.epath`), so a run folder in a bucket can be read."""
    with epath.Path(path).open("r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                return  # torn tail of a crashed writer
            if line.strip():
                try:
                    yield DialogueRecord.from_json(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: corrupt journal line: {e}") from e


def read_journals(paths: list[str | os.PathLike]) -> Iterator[DialogueRecord]:
    """Records of several workers' journals, each key once (first occurrence wins)."""
    seen: set[str] = set()
    for p in sorted(map(str, paths)):
        for r in iter_records(p):
            if r.key not in seen:
                seen.add(r.key)
                yield r
