"""The OS walls around a code checker: a bubblewrap (`bwrap`) command line and a start-up probe.

Why bubblewrap: it is Debian's well-kept unprivileged sandbox (Flatpak's), installed by the
project's `make sysdeps`, and it works the same as root and as an ordinary user through
unprivileged user namespaces. The checker process gets:
- new user, mount, pid, network, ipc, uts and cgroup namespaces (`--unshare-all --unshare-user`),
  no capabilities, no nested user namespaces (`--disable-userns`);
- a read-only minimal filesystem: the interpreter's prefix, the shared libraries and time zones
  under /usr (no /etc, /home, /root, /proc, /tmp, no repository), a private /dev, and one
  writable scratch directory mounted at /sandbox;
- no inherited environment (`--clearenv`), its own session, death with its parent, and the
  seccomp program of `seccomp.base_filter()`;
- as pid 1 of its pid namespace a bwrap init: killing it (the parent kills bwrap's process group;
  `--die-with-parent` forwards that) makes the kernel kill every process of the namespace, so
  nothing a checker started survives the verdict.
As root, the caller first switches to a throw-away uid (`sandbox.py`), so bwrap itself runs
unprivileged there too. Where bwrap is missing or the host forbids user namespaces, `probe()`
raises `SandboxUnavailable` with one line, and no checker runs: the sandbox fails closed.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from data_agents.checkers import seccomp

SCRATCH = "/sandbox"  # where the writable scratch directory appears inside the sandbox
RUNNER_PATH = "/runner/_sandbox_runner.py"
# Read-only views: shared libraries (the dynamic loader reads /lib64 -> usr/lib64 etc.) and the
# time-zone data `zoneinfo` needs. Nothing with secrets or writable host state.
LIBRARY_DIRS = ("/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/share/zoneinfo")
TOP_LEVEL_LINKS = ("/lib", "/lib64", "/lib32")


class SandboxUnavailable(RuntimeError):
    """The host cannot run the OS-level checker sandbox; checkers must not run at all."""


def bwrap_binary() -> str:
    path = shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")
    if path is None:
        raise SandboxUnavailable(
            "checker sandbox unavailable: bubblewrap (bwrap) is not "
            "installed; `make sysdeps` installs it (Debian: apt-get install "
            "bubblewrap)"
        )
    return path


def _interpreter_binds(interpreter: str) -> list[str]:
    """Bind the interpreter's installation read-only at its own path (its libpython RUNPATH may
    be absolute), or just the binary when it lives in /usr/bin."""
    real = os.path.realpath(interpreter)
    prefix = os.path.dirname(os.path.dirname(real))
    if prefix == "/usr":
        return ["--ro-bind", real, real]
    return ["--ro-bind", prefix, prefix]


def command(
    interpreter: str,
    scratch: str,
    runner: str,
    seccomp_fd: int,
    result_fd: int,
    info_fd: int | None = None,
) -> list[str]:
    """The bwrap argv that runs `interpreter -I -S -B runner SCRATCH RESULT_FD` in the walls;
    bwrap reads the seccomp program from `seccomp_fd` (inherited, like `result_fd`) and writes
    the sandbox init's host pid to `info_fd` (see `reap`)."""
    argv = [
        bwrap_binary(),
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--hostname",
        "checker",
    ]
    for path in LIBRARY_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            argv += ["--ro-bind", path, path]
    for link in TOP_LEVEL_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    argv += _interpreter_binds(interpreter)
    argv += [
        "--dev",
        "/dev",
        "--bind",
        scratch,
        SCRATCH,
        "--ro-bind",
        runner,
        RUNNER_PATH,
        "--chdir",
        SCRATCH,
        "--setenv",
        "HOME",
        SCRATCH,
        "--setenv",
        "TMPDIR",
        SCRATCH,
        "--setenv",
        "LC_ALL",
        "C.UTF-8",
        "--setenv",
        "PYTHONHASHSEED",
        "0",
        "--seccomp",
        str(seccomp_fd),
    ]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    argv += [os.path.realpath(interpreter), "-I", "-S", "-B", RUNNER_PATH, SCRATCH, str(result_fd)]
    return argv


def sandbox_init_pid(info: bytes) -> int | None:
    """The host pid of the sandbox's pid-1 init, from bwrap's --info-fd JSON."""
    try:
        pid = json.loads(info.decode()).get("child-pid")
    except (ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and pid > 1 else None


def reap(init_pid: int, timeout_s: float = 5.0) -> bool:
    """SIGKILL the sandbox's init and wait until it is gone or a zombie: its exit tears the pid
    namespace down (the kernel kills every process in it and the init waits for them all), so
    after this nothing the checker started is running. False if it outlived the timeout."""
    try:
        os.kill(init_pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{init_pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.005)
    return False


def candidate_interpreters() -> list[str]:
    """This process's own interpreter first (same Python as the rest of the project), then the
    system one (a throw-away uid may not be allowed into e.g. /root/.pyenv)."""
    seen, out = set(), []
    for path in (getattr(sys, "_base_executable", None), sys.executable, "/usr/bin/python3"):
        if path and os.path.isfile(path) and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            out.append(path)
    return out


def seccomp_pipe() -> int:
    """A pipe's read end holding the base seccomp program (bwrap reads it before forking the
    sandbox; a few hundred bytes fit the pipe buffer). The caller closes it after the start."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, seccomp.base_filter())
    finally:
        os.close(write_end)
    return read_end


def popen(argv: list[str], uid: int | None, pass_fds: tuple[int, ...], **kw) -> subprocess.Popen:
    """Start bwrap in its own session (its process group is what the parent kills) and, as root,
    as the throw-away `uid` with no supplementary groups."""
    ids = {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}
    return subprocess.Popen(
        argv, start_new_session=True, close_fds=True, pass_fds=pass_fds, **ids, **kw
    )


def throwaway_uid() -> int | None:
    """As root: a random uid/gid no account has (2^20..2^30), so the sandbox's processes can be
    found and killed by uid, and bwrap runs unprivileged. Otherwise None (keep our own uid)."""
    return secrets.randbelow(1 << 30) + (1 << 20) if os.geteuid() == 0 else None


def _traversable_by_others(path: str) -> bool:
    """Whether a uid with no rights of its own can reach `path` (o+x on every ancestor)."""
    path = os.path.realpath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        if path == "/":
            return True
        path = os.path.dirname(path)


def prepare_dirs(uid: int | None, runner_source: str) -> tuple[str, str, str]:
    """A private temp dir holding a copy of the runner and the scratch dir, owned by `uid` (a
    throw-away uid cannot enter the repository or root's temp dirs). Returns (top, scratch,
    runner copy); the caller removes `top`."""
    base = tempfile.gettempdir()
    if uid is not None and not _traversable_by_others(base):
        base = "/tmp"  # e.g. pytest's 0700 temp root: the throw-away uid could not enter it
    top = tempfile.mkdtemp(prefix="checker-", dir=base)
    scratch = os.path.join(top, "work")
    os.mkdir(scratch, 0o700)
    runner = os.path.join(top, "runner.py")
    shutil.copyfile(runner_source, runner)
    if uid is not None:
        for path in (top, scratch, runner):
            os.chown(path, uid, uid)
    return top, scratch, runner


@functools.cache
def probe(euid: int, runner_source: str) -> str:
    """Find an interpreter that starts inside the sandbox for this euid, or say in one line why
    none can (cached per euid: a host's ability does not change within a process)."""
    bwrap_binary()
    seccomp.base_filter()  # raises SeccompUnsupported on an architecture without a table
    reasons = []
    for interpreter in candidate_interpreters():
        uid = throwaway_uid()
        top, scratch, runner = prepare_dirs(uid, runner_source)
        try:
            filter_fd = seccomp_pipe()
            argv = command(interpreter, scratch, runner, filter_fd, 1)
            argv[-3:] = ["-c", "import json, zoneinfo, ctypes"]
            try:
                proc = popen(
                    argv,
                    uid,
                    (filter_fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd="/",
                )
            finally:
                os.close(filter_fd)
            _, err = proc.communicate(timeout=30)
            if proc.returncode == 0:
                return interpreter
            last = (err.decode(errors="replace").strip().splitlines() or ["?"])[-1]
            reasons.append(f"{interpreter}: {last[:200]}")
        except (OSError, subprocess.SubprocessError) as e:
            reasons.append(f"{interpreter}: {e}")
        finally:
            shutil.rmtree(top, ignore_errors=True)
    raise SandboxUnavailable(
        "checker sandbox unavailable: bubblewrap cannot start a sandbox "
        "here (are unprivileged user namespaces enabled?): " + "; ".join(reasons)
    )
