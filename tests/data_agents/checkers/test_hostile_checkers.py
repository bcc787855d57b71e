"""The hostile-checker corpus (`hostile_corpus.py`) against the OS-level sandbox, as root and as an
unprivileged user, with the in-process audit hook on and with it removed outright (the runner
copy below drops `sys.addaudithook`): the OS walls must hold alone. Every case asserts a non-pass
verdict, host files/network/processes untouched, and no process of the sandbox's uid alive
after the verdict."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from data_agents.checkers import bwrap, sandbox
from data_agents.checkers.sandbox import SandboxLimits, run_code_checker
from tests.data_agents.checkers.hostile_corpus import CORPUS

LIMITS = SandboxLimits(
    cpu_s=1, wall_s=3.0, memory_bytes=256 << 20, file_bytes=4 << 20, output_bytes=64 << 10
)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(sandbox.__file__)))
SECRET_ENV = "EIGEN_HOSTILE_SECRET"


def _uid_processes(uid: int) -> list[int]:
    """Pids of live (non-zombie) processes whose real or effective uid is `uid`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if str(uid) in fields.get("Uid", "").split()[:2] and "Z" not in fields["State"]:
            found.append(int(pid))
    return found


@pytest.fixture
def host(monkeypatch):
    """World-accessible host state only the sandbox can protect: a readable secret file, a
    writable dir, a listening socket, and a secret in the environment."""
    base = tempfile.mkdtemp(prefix="hostile-", dir="/tmp")
    os.chmod(base, 0o777)
    sentinel = os.path.join(base, "sentinel.txt")
    with open(sentinel, "w") as f:
        f.write("secret")
    os.chmod(sentinel, 0o644)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    monkeypatch.setenv(SECRET_ENV, "EIGEN-hunter2")
    scratch_root = os.path.join(base, "tmp")
    os.mkdir(scratch_root)
    os.chmod(scratch_root, 0o777)
    monkeypatch.setattr(tempfile, "tempdir", scratch_root)
    ctx = {
        "sentinel": sentinel,
        "pwned": os.path.join(base, "pwned"),
        "repo": REPO,
        "port": listener.getsockname()[1],
        "host_pid": os.getpid(),
        "secret_env": SECRET_ENV,
    }
    yield ctx, listener, scratch_root
    listener.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["guard", "no_guard"])
def runner(request, monkeypatch):
    """The real runner, or a copy without the audit hook (the strongest guard replacement), in a
    world-readable dir (the unprivileged uid copies it)."""
    if request.param == "no_guard":
        with open(sandbox.RUNNER) as f:
            source = f.read()
        hook = "sys.addaudithook(_make_guard("
        assert source.count(hook) == 1
        folder = tempfile.mkdtemp(prefix="runner-", dir="/tmp")
        os.chmod(folder, 0o755)
        path = os.path.join(folder, "runner_without_guard.py")
        with open(path, "w") as f:
            f.write(source.replace(hook, "(_make_guard("))
        os.chmod(path, 0o644)
        monkeypatch.setattr(sandbox, "RUNNER", path)
        yield request.param
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield request.param


def _run_as(identity: str, source: str, ctx: dict, monkeypatch) -> tuple[dict, list[int]]:
    """Run the checker as root (the sandbox drops to a throw-away uid itself) or as an
    unprivileged uid (a forked child that setuid()s first); return the verdict and the uids
    whose processes must all be gone afterwards."""
    if identity == "root":
        if os.geteuid() != 0:
            pytest.skip("the root case needs root")
        uids = []
        real = bwrap.throwaway_uid
        monkeypatch.setattr(bwrap, "throwaway_uid", lambda: uids.append(real()) or uids[-1])
        return run_code_checker(source, ctx, {}, [], LIMITS).to_json(), uids
    if os.geteuid() != 0:
        return run_code_checker(source, ctx, {}, [], LIMITS).to_json(), []
    uid = secrets.randbelow(1 << 20) + (1 << 30)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the unprivileged host: no capabilities, no way back
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            ctx = dict(ctx, host_pid=os.getpid())  # the attack aims at the unprivileged host
            verdict = run_code_checker(source, ctx, {}, [], LIMITS).to_json()
            os.write(write_end, json.dumps(verdict).encode())
        except BaseException as e:  # noqa: B036 - reported to the parent, which fails the test
            os.write(write_end, json.dumps({"status": "crash", "reason": repr(e)}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data), [uid]


@pytest.mark.parametrize("identity", ["root", "unprivileged"])
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_checker_is_contained(case, identity, runner, host, monkeypatch):
    ctx, listener, scratch_root = host
    kind, source = CORPUS[case]
    verdict, uids = _run_as(identity, source, ctx, monkeypatch)
    assert verdict["status"] in ("fail", "error"), verdict
    assert verdict["reward"] == 0.0
    with open(ctx["sentinel"]) as f:
        assert f.read() == "secret"
    assert not os.path.exists(ctx["pwned"])
    assert not os.path.exists(os.path.join(REPO, "PWNED_BY_CHECKER"))
    with pytest.raises(BlockingIOError):
        listener.accept()
    for uid in uids:
        assert _uid_processes(uid) == [], f"processes of uid {uid} survived the verdict"
    assert os.listdir(scratch_root) == []  # the sandbox's temp dir is gone


def test_corpus_covers_every_kind():
    kinds = {kind for kind, _ in CORPUS.values()}
    assert kinds == {"file", "network", "process", "environment", "resource", "verdict", "guard"}
    assert len(CORPUS) >= 30


def test_honest_checker_passes_and_fails_in_both_identities(host, monkeypatch):
    """The walls do not break honest checkers: a hand-computed answer, both ways."""
    ctx = host[0]
    for identity in ("root", "unprivileged"):
        if identity == "root" and os.geteuid() != 0:
            continue
        for want in (True, False):
            source = (
                f"import json, datetime, zoneinfo\ndef check(a, b, t):\n"
                f"    open('scratch.txt', 'w').write(json.dumps(a['n']))\n"
                f"    return (sum(range(a['n'])) == 45) is {want}\n"
            )
            verdict, _ = _run_as(identity, source, dict(ctx, n=10), monkeypatch)
            assert verdict["status"] == ("pass" if want else "fail"), (identity, verdict)


def test_missing_bubblewrap_fails_closed(monkeypatch):
    monkeypatch.setattr(bwrap.shutil, "which", lambda *a, **k: None)
    bwrap.probe.cache_clear()
    try:
        with pytest.raises(bwrap.SandboxUnavailable, match="bubblewrap"):
            run_code_checker("def check(a, b, t):\n    return True\n", {}, {}, [], LIMITS)
    finally:
        bwrap.probe.cache_clear()


# Attacks that work on an unprotected host (checked as root, without any sandbox): the control
# that shows the containment assertions above measure something.
LIVE_WITHOUT_SANDBOX = (
    "read_etc_passwd",
    "read_host_file",
    "write_host_dir",
    "list_host_root",
    "symlink_to_root",
    "connect_loopback",
    "fork",
    "subprocess_shell",
    "ctypes_system",
    "environment_secret",
    "replace_os_exit",
)
HARNESS = (
    "import json, sys\nsrc, ctx = json.load(sys.stdin)\nns = {}\nexec(src, ns)\n"
    "print(json.dumps(ns['check'](ctx, {}, [])))\n"
)


@pytest.mark.parametrize("case", LIVE_WITHOUT_SANDBOX)
def test_attack_succeeds_without_the_sandbox(case, host):
    ctx, _, scratch_root = host
    proc = subprocess.run(
        [sys.executable, "-I", "-c", HARNESS],
        cwd=scratch_root,
        timeout=60,
        input=json.dumps([CORPUS[case][1], ctx]),
        capture_output=True,
        text=True,
    )
    assert proc.stdout.strip().splitlines()[-1] == "true", (proc.stdout, proc.stderr)
