"""Guarding a generation output folder: one writer per role, one configuration per folder.

Why: journals are resumable by key, so two processes appending the same worker's journal, or a
resume under different science knobs, would silently mix instances that do not belong together
(duplicate keys from two writers; round 0 with 2 plans, round 1 with 8). Both are refused with one
line before anything is written:

- `hold_lock(out, role)`: an exclusive `fcntl.flock` on `out/locks/<role>.lock`, held until the
  process exits (the kernel drops it on exit, even after SIGKILL, so a crash leaves no stale lock).
  Roles are per worker, so the N workers of one run share a folder while a second copy of any one
  of them is refused.
- `record_config(out, config)`: the run's configuration and its fingerprint are written once to
  `out/journals/config.json`, beside the journals they describe; a later run must match it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
_held: dict[str, int] = {}  # lock path -> fd, kept open for the life of the process


class OutputInUse(RuntimeError):
    """Another live process holds this role's lock on the output folder."""


class ConfigMismatch(ValueError):
    """The folder's journals were written under a different configuration."""


def hold_lock(out: str | os.PathLike, role: str) -> Path:
    """Take `out/locks/<role>.lock` for the rest of this process; raise `OutputInUse` if taken."""
    path = Path(out) / "locks" / f"{role}.lock"
    if str(path) in _held:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise OutputInUse(
            f"{out} is in use: another run holds {path} (pid {holder}); wait for "
            "it to finish or use another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[str(path)] = fd
    return path


def release_lock(path: str | os.PathLike) -> None:
    """Drop a lock taken by `hold_lock` (tests; a process's exit drops it too)."""
    fd = _held.pop(str(path), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def fingerprint(config: dict[str, Any]) -> str:
    """Short SHA-256 of canonical JSON: equal configurations, equal fingerprints."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_config(out: str | os.PathLike, config: dict[str, Any]) -> str:
    """Write the configuration on a folder's first run; on later runs, insist it is unchanged.

    The first writer wins atomically (a hard link cannot replace an existing file), so workers
    starting together cannot record two configurations. Returns the fingerprint.
    """
    config = json.loads(json.dumps(config, sort_keys=True, default=str))  # as it reads back
    path = Path(out) / "journals" / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"fingerprint": fingerprint(config), "config": config}
    if not path.exists():
        tmp = path.with_name(f".{CONFIG_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another worker recorded it first: compare below
        finally:
            tmp.unlink()
    recorded = json.loads(path.read_text(encoding="utf-8"))
    if recorded["fingerprint"] != body["fingerprint"]:
        old, new = recorded["config"], config
        diff = [
            f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
        ]
        raise ConfigMismatch(
            f"{out} was generated with another configuration (fingerprint "
            f"{recorded['fingerprint']}, now {body['fingerprint']}): "
            f"{'; '.join(diff)}; resume with the recorded configuration or "
            "use another --out"
        )
    return body["fingerprint"]
