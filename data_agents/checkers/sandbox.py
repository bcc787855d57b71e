"""Run an LLM-written code checker, `check(initial_db, final_db, transcript) -> bool`, safely.

The source is untrusted: it was written by a model and may be buggy or hostile. It runs in a
separate, short-lived Python process (`_sandbox_runner.py`, standard library only) with:
- its own session/process group, killed as a whole (and every process of its throw-away uid)
  on timeout or when it floods its output;
- a fresh temporary working directory (the only place it may open files), deleted afterwards;
- an empty environment (HOME/TMPDIR point at the temp dir; no inherited secrets);
- RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_FSIZE, RLIMIT_NOFILE, no core dumps, a wall clock;
- when the host runs as root: a private network namespace, a random unprivileged uid/gid with
  RLIMIT_NPROC and no_new_privs (real OS walls);
- always: a PEP 578 audit hook that kills the process on sockets, subprocesses, forks, signals,
  ctypes, new imports, file access outside the temp dir and frame/gc introspection.
Data goes in as JSON (a copy: the checker cannot touch the caller's objects); one result line,
tagged with a per-run nonce the checker cannot read, comes back. Anything else — a crash, a
violation, a timeout, a non-bool answer, missing or forged output — is an `error` verdict,
and an error never counts as a pass.
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from data_agents.checkers.verdict import Verdict

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_runner.py")
VIOLATION_EXIT = 86  # keep in sync with _sandbox_runner.VIOLATION_EXIT


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    cpu_s: int = 5
    wall_s: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 1 << 20
    output_bytes: int = 64 << 10
    nproc: int = 4
    drop_privileges: bool = True  # use a random uid + network namespace when running as root

    def __post_init__(self):
        for field in ("cpu_s", "wall_s", "memory_bytes", "file_bytes", "output_bytes", "nproc"):
            if not getattr(self, field) > 0:
                raise ValueError(f"SandboxLimits.{field} must be positive, got "
                                 f"{getattr(self, field)!r}")


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as `uid` (escapees from the process group)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            if str(uid) in uids:
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, StopIteration):
            continue


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _collect(proc: subprocess.Popen, limits: SandboxLimits) -> tuple[bytes, bytes, str | None]:
    """Read stdout/stderr until exit, the wall clock or the output cap; say which stopped it."""
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    deadline = time.monotonic() + limits.wall_s
    stopped = None
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stopped = f"wall-clock limit of {limits.wall_s:g} s exceeded"
            break
        for key, _ in sel.select(timeout=min(remaining, 0.5)):
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            key.data.extend(chunk)
            if len(out) + len(err) > limits.output_bytes:
                stopped = f"output exceeded {limits.output_bytes} bytes"
                break
        if stopped:
            break
    sel.close()
    if stopped:
        _kill_group(proc)
    try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        stopped = stopped or f"wall-clock limit of {limits.wall_s:g} s exceeded"
        _kill_group(proc)
        proc.wait()
    return bytes(out), bytes(err), stopped


def _describe_exit(code: int, err: bytes, limits: SandboxLimits) -> str:
    tail = err.decode(errors="replace").strip().splitlines()
    if code == VIOLATION_EXIT and tail and tail[-1].startswith("sandbox violation"):
        return tail[-1]
    if code < 0:
        sig = signal.Signals(-code).name
        if -code in (signal.SIGXCPU, signal.SIGKILL):
            return f"killed by {sig} (CPU limit {limits.cpu_s} s or memory limit)"
        return f"killed by {sig}"
    last = tail[-1][:300] if tail else ""
    return f"checker process exited with code {code} without a result" + (
        f"; stderr: {last}" if last else "")


def run_code_checker(source: str, initial_db: Any, final_db: Any,
                     transcript: list[dict[str, Any]],
                     limits: SandboxLimits | None = None) -> Verdict:
    """Run `check(initial_db, final_db, transcript)` from `source` in the sandbox.

    Returns pass/fail for a clean boolean answer (`components={"CODE": 1.0 | 0.0}`), else an
    error verdict whose reason says what happened. Bad arguments raise ValueError/TypeError.
    """
    limits = limits or SandboxLimits()
    if not isinstance(source, str) or not source.strip():
        raise ValueError("checker source must be a non-empty string")
    uid = (secrets.randbelow(1 << 30) + (1 << 20)
           if limits.drop_privileges and os.geteuid() == 0 else None)
    nonce = secrets.token_hex(16)
    try:  # one C-encoder pass (json.dump to a file would use the slow pure-Python encoder)
        payload = json.dumps({"nonce": nonce, "uid": uid, "source": source,
                              "args": [initial_db, final_db, transcript],
                              "limits": {"cpu_s": limits.cpu_s,
                                         "memory_bytes": limits.memory_bytes,
                                         "file_bytes": limits.file_bytes,
                                         "nproc": limits.nproc}})
    except (TypeError, ValueError) as e:
        raise TypeError(f"checker inputs must be JSON-serialisable: {e}") from e
    tmpdir = tempfile.mkdtemp(prefix="checker-")
    try:
        with open(os.path.join(tmpdir, "request.json"), "w") as f:
            f.write(payload)
        del payload
        env = {"HOME": tmpdir, "TMPDIR": tmpdir, "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0"}
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", RUNNER, tmpdir],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=tmpdir, env=env,
                                start_new_session=True, close_fds=True)
        try:
            out, err, stopped = _collect(proc, limits)
        finally:
            _kill_group(proc)
            if uid is not None:
                _kill_uid(uid)
            proc.stdout.close()
            proc.stderr.close()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if stopped:
        return Verdict("error", {"CODE": 0.0}, stopped)
    result = None
    if proc.returncode == 0:
        for line in out.decode(errors="replace").splitlines():
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and parsed.get("nonce") == nonce:
                result = parsed
    if result is None:
        return Verdict("error", {"CODE": 0.0}, _describe_exit(proc.returncode, err, limits))
    if result["status"] == "error":
        return Verdict("error", {"CODE": 0.0}, result["detail"])
    return Verdict(result["status"], {"CODE": float(result["status"] == "pass")},
                   None if result["status"] == "pass" else "code checker returned False")
