"""Run an LLM-written code checker, `check(initial_db, final_db, transcript) -> bool`, safely.

The source is untrusted: written by a model, maybe buggy or hostile. What holds it is the OS, not
Python: a short-lived process inside bubblewrap (`bwrap.py`: user/mount/pid/net/ipc namespaces, a
read-only minimal filesystem with one private scratch dir, no environment, seccomp `seccomp.py`),
as root first switched to a throw-away uid, with rlimits (CPU, memory, file size, fds) and a wall
clock; at the deadline, on an output flood, and after every verdict the whole process group (and
so the sandbox's pid namespace, and as root every process of the throw-away uid) is SIGKILLed.
Inside, `_sandbox_runner.py` adds an in-process audit hook as defence in depth only.

The verdict crosses the boundary as a value: the runner writes one byte code for what `check`
returned to a dedicated pipe, and this process decides. Only the code for `True`, alone, from a
process that exited 0 within its limits, is a pass; a crash, a violation, a kill, a timeout, a
non-bool, extra or missing bytes are an `error` verdict, and an error never counts as a pass.
Anything the checker prints is ignored. (A checker can of course claim a pass by returning True:
the verdict is only as right as the checker, which is why task verification probes it on the
gold replay, the initial state and a partial replay: `agents/task_verify.probe_code_checker`.)
Where the host can run no sandbox, `SandboxUnavailable` is raised: checkers never run unguarded.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from typing import Any

from data_agents.checkers import bwrap, seccomp
from data_agents.checkers.verdict import Verdict

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_runner.py")
VIOLATION_EXIT = 86  # keep in sync with _sandbox_runner.VIOLATION_EXIT
RESULT_BYTES = 2048  # the runner's answer: one code byte and at most 1000 characters of reason


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    cpu_s: int = 5
    wall_s: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 1 << 20
    output_bytes: int = 64 << 10

    def __post_init__(self):
        for field in ("cpu_s", "wall_s", "memory_bytes", "file_bytes", "output_bytes"):
            if not getattr(self, field) > 0:
                raise ValueError(
                    f"SandboxLimits.{field} must be positive, got {getattr(self, field)!r}"
                )


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
    """SIGKILL bwrap's process group; its sandbox init dies with it (--die-with-parent) and takes
    the whole pid namespace along."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _collect(
    proc: subprocess.Popen, result_fd: int, limits: SandboxLimits
) -> tuple[bytes, bytes, bytes, str | None]:
    """Read stdout, stderr and the result pipe until all close, the wall clock or a size cap;
    say which stopped it."""
    out, err, result = bytearray(), bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    sel.register(result_fd, selectors.EVENT_READ, result)
    deadline = time.monotonic() + limits.wall_s
    stopped = None
    while sel.get_map() and not stopped:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stopped = f"wall-clock limit of {limits.wall_s:g} s exceeded"
            break
        for key, _ in sel.select(timeout=min(remaining, 0.5)):
            fd = key.fd
            chunk = os.read(fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            key.data.extend(chunk)
            if len(out) + len(err) > limits.output_bytes:
                stopped = f"output exceeded {limits.output_bytes} bytes"
            elif len(result) > RESULT_BYTES:
                stopped = "the checker wrote more than a result to the result channel"
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
    return bytes(out), bytes(err), bytes(result), stopped


def _describe_exit(code: int, err: bytes, limits: SandboxLimits) -> str:
    tail = err.decode(errors="replace").strip().splitlines()
    if code == VIOLATION_EXIT and tail and tail[-1].startswith("sandbox violation"):
        return tail[-1]
    signum = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else None
    if signum:  # bwrap reports a child killed by signal N as exit status 128 + N
        sig = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else signum
        if signum == signal.SIGSYS:
            return f"killed by {sig}: a forbidden system call (seccomp)"
        if signum in (signal.SIGXCPU, signal.SIGKILL):
            return f"killed by {sig} (CPU limit {limits.cpu_s} s or memory limit)"
        return f"killed by {sig}"
    last = tail[-1][:300] if tail else ""
    return f"checker process exited with code {code} without a result" + (
        f"; stderr: {last}" if last else ""
    )


def _describe_result(code: int, result: bytes, err: bytes, limits: SandboxLimits) -> Verdict:
    """The trusted side of the boundary: the runner's one-byte code becomes a verdict here."""
    if code == 0 and result in (b"T", b"F"):
        passed = result == b"T"
        return Verdict(
            "pass" if passed else "fail",
            {"CODE": float(passed)},
            None if passed else "code checker returned False",
        )
    if code == 0 and result.startswith(b"E"):
        return Verdict("error", {"CODE": 0.0}, result[1:].decode(errors="replace"))
    if code == 0 and result:
        return Verdict("error", {"CODE": 0.0}, f"malformed result {result[:40]!r}")
    return Verdict("error", {"CODE": 0.0}, _describe_exit(code, err, limits))


def run_code_checker(
    source: str,
    initial_db: Any,
    final_db: Any,
    transcript: list[dict[str, Any]],
    limits: SandboxLimits | None = None,
) -> Verdict:
    """Run `check(initial_db, final_db, transcript)` from `source` in the sandbox.

    Returns pass/fail for a clean boolean answer (`components={"CODE": 1.0 | 0.0}`), else an
    error verdict whose reason says what happened. Bad arguments raise ValueError/TypeError; a
    host that cannot sandbox raises `SandboxUnavailable` (one line, before any checker runs).
    """
    limits = limits or SandboxLimits()
    if not isinstance(source, str) or not source.strip():
        raise ValueError("checker source must be a non-empty string")
    try:  # one C-encoder pass (json.dump to a file would use the slow pure-Python encoder)
        payload = json.dumps(
            {
                "source": source,
                "args": [initial_db, final_db, transcript],
                "no_spawn_filter": base64.b64encode(seccomp.no_spawn_filter()).decode(),
                "limits": {
                    "cpu_s": limits.cpu_s,
                    "memory_bytes": limits.memory_bytes,
                    "file_bytes": limits.file_bytes,
                },
            }
        )
    except (TypeError, ValueError) as e:
        raise TypeError(f"checker inputs must be JSON-serialisable: {e}") from e
    interpreter = bwrap.probe(os.geteuid(), RUNNER)
    uid = bwrap.throwaway_uid()
    top, scratch, runner = bwrap.prepare_dirs(uid, RUNNER)
    try:
        request = os.path.join(scratch, "request.json")
        with open(request, "w") as f:
            f.write(payload)
        del payload
        if uid is not None:
            os.chown(request, uid, uid)
        out, err, result, stopped, code = _run(interpreter, scratch, runner, uid, limits)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    if stopped:
        return Verdict("error", {"CODE": 0.0}, stopped)
    return _describe_result(code, result, err, limits)


def _run(interpreter: str, scratch: str, runner: str, uid: int | None, limits: SandboxLimits):
    """Start the sandbox, collect its answer, and leave no process of it behind."""
    result_read, result_write = os.pipe()
    info_read, info_write = os.pipe()
    filter_fd = bwrap.seccomp_pipe()
    try:
        argv = bwrap.command(interpreter, scratch, runner, filter_fd, result_write, info_write)
        proc = bwrap.popen(
            argv,
            uid,
            (filter_fd, result_write, info_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
        )
    except BaseException:
        os.close(result_read)
        os.close(info_read)
        raise
    finally:
        for fd in (filter_fd, result_write, info_write):
            os.close(fd)
    try:
        out, err, result, stopped = _collect(proc, result_read, limits)
    finally:
        _kill_group(proc)
        os.set_blocking(info_read, False)
        try:
            info = os.read(info_read, 4096)
        except BlockingIOError:
            info = b""
        init_pid = bwrap.sandbox_init_pid(info)
        gone = init_pid is None or bwrap.reap(init_pid)
        if uid is not None:
            _kill_uid(uid)
        for fd in (result_read, info_read):
            os.close(fd)
        proc.stdout.close()
        proc.stderr.close()
    if not gone:
        stopped = stopped or f"sandbox process {init_pid} did not die"
    return out, err, result, stopped, proc.returncode
