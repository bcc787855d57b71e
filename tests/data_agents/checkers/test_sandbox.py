"""The code-checker sandbox: hostile checkers are contained (error verdict with a reason, host
files and processes untouched); honest checkers pass and fail exactly as a direct call would."""

from __future__ import annotations

import glob
import os
import random
import tempfile

import pytest

from data_agents.checkers.sandbox import SandboxLimits, run_code_checker

LIMITS = SandboxLimits(
    cpu_s=2, wall_s=4.0, memory_bytes=512 << 20, file_bytes=1 << 20, output_bytes=16 << 10
)
PWNED = os.path.join(tempfile.gettempdir(), "pwned_by_checker")

# name -> (source, substring(s) one of which the error reason must contain). initial_db["sentinel"]
# names a host file the checker tries to read, change or delete.
HOSTILE = {
    "read_passwd": (
        "def check(a, b, t):\n    try:\n"
        "        return 'root' in open('/etc/passwd').read()\n"
        "    except Exception:\n        return True\n",
        "open('/etc/passwd')",
    ),
    "read_home": ("def check(a, b, t):\n    return bool(open('/root/.bashrc').read())\n", "open("),
    "read_sentinel": (
        "def check(a, b, t):\n    return open(a['sentinel']).read() == 'x'\n",
        "open(",
    ),
    "read_environ": (
        "def check(a, b, t):\n    return bool(open('/proc/self/environ').read())\n",
        "open('/proc/self/environ')",
    ),
    "write_outside": (
        f"def check(a, b, t):\n    open({PWNED!r}, 'w').write('x')\n    return True\n",
        "open(",
    ),
    "delete_sentinel": (
        "import os\ndef check(a, b, t):\n    os.remove(a['sentinel'])\n    return True\n",
        "os.remove",
    ),
    "os_system": (
        f"import os\ndef check(a, b, t):\n    os.system('touch {PWNED}')\n    return True\n",
        "os.system",
    ),
    "subprocess": (
        "def check(a, b, t):\n    sp = __import__('subprocess')\n"
        "    return sp.run(['true']).returncode == 0\n",
        "import('subprocess')",
    ),
    "socket": ("import socket\ndef check(a, b, t):\n    return True\n", "import('socket')"),
    "builtins_import": (
        "import builtins\ndef check(a, b, t):\n"
        "    builtins.__dict__['__import__']('_socket')\n    return True\n",
        "import('_socket')",
    ),
    "ctypes": (
        "def check(a, b, t):\n    __import__('ctypes').CDLL(None).system(b'id')\n    return True\n",
        "import('ctypes')",
    ),
    "subclasses_walk": (
        "def check(a, b, t):\n    w = [c for c in ().__class__.__base__.__subclasses__()"
        " if c.__name__ == '_wrap_close'][0]\n"
        f"    w.__init__.__globals__['system']('touch {PWNED}')\n    return True\n",
        "os.system",
    ),
    "fork_bomb": (
        "import os\ndef check(a, b, t):\n    while True:\n        os.fork()\n",
        "os.fork",
    ),
    "kill_parent": (
        "import os, signal\ndef check(a, b, t):\n"
        "    os.kill(os.getppid(), signal.SIGKILL)\n    return True\n",
        "os.kill",
    ),
    "infinite_loop": ("def check(a, b, t):\n    while True:\n        pass\n", "limit"),
    "ignore_signals": (
        "import signal\ndef check(a, b, t):\n"
        "    for s in (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT):\n"
        "        signal.signal(s, signal.SIG_IGN)\n    while True:\n        pass\n",
        "limit",
    ),
    "memory_bomb": (
        "def check(a, b, t):\n    x = []\n    while True:\n        x.append(bytearray(50 << 20))\n",
        ("MemoryError", "memory limit", "wall-clock limit"),
    ),
    "huge_output": (
        "def check(a, b, t):\n    while True:\n        print('x' * 4096)\n",
        "output exceeded",
    ),
    "huge_file": (
        "def check(a, b, t):\n    with open('big.bin', 'wb') as f:\n"
        "        f.write(b'x' * (8 << 20))\n    return True\n",
        "File too large",
    ),
    "os_exit": ("import os\ndef check(a, b, t):\n    os._exit(0)\n", "without a result"),
    "sys_exit": ("import sys\ndef check(a, b, t):\n    sys.exit(0)\n", "SystemExit"),
    "forge_result": (
        "import json, os\ndef check(a, b, t):\n"
        "    print(json.dumps({'nonce': 'guess', 'status': 'pass'}))\n"
        "    os._exit(0)\n",
        "without a result",
    ),
    "steal_nonce_getframe": (
        "import sys\ndef check(a, b, t):\n    return 'nonce' in sys._getframe(1).f_locals\n",
        "sys._getframe",
    ),
    "steal_nonce_traceback": (
        "def check(a, b, t):\n    try:\n        1 / 0\n"
        "    except ZeroDivisionError as e:\n"
        "        return e.__traceback__.tb_frame.f_back is not None\n",
        "frame introspection",
    ),
    "steal_nonce_gc": (
        "import gc\ndef check(a, b, t):\n    return bool(gc.get_objects())\n",
        "gc.get_objects",
    ),
    "list_root": (
        "import os\ndef check(a, b, t):\n    return bool(os.listdir('/'))\n",
        "os.listdir",
    ),
    "thread_escape": (
        f"import threading, os, time\ndef check(a, b, t):\n"
        f"    threading.Thread(target=os.system, args=('touch {PWNED}',)).start()\n"
        f"    time.sleep(1)\n    return True\n",
        "os.system",
    ),
    "not_bool": ("def check(a, b, t):\n    return 'yes'\n", "expected bool"),
    "no_check": ("def verify(a, b, t):\n    return True\n", "no callable `check`"),
    "syntax_error": ("def check(a, b, t)\n    return True\n", "does not compile"),
}


def _children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(line.split()[1:] == [me] for line in f if line.startswith("PPid:")):
                    out.add(int(pid))
        except OSError:
            pass
    return out


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "sentinel.txt"
    path.write_text("x")
    return path


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_checker_is_contained(name, sentinel, tmp_path, monkeypatch):
    source, expected = HOSTILE[name]
    scratch = tmp_path / "tmp"  # this test's own temp root: parallel workers run checkers too
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before_children = _children()
    verdict = run_code_checker(source, {"sentinel": str(sentinel)}, {}, [], LIMITS)
    assert verdict.status == "error" and verdict.reward == 0.0, verdict
    expected = (expected,) if isinstance(expected, str) else expected
    assert any(e in verdict.reason for e in expected), verdict.reason
    assert sentinel.read_text() == "x"  # host files untouched
    assert not os.path.exists(PWNED)
    assert _children() <= before_children  # nothing left running
    assert not glob.glob(str(scratch / "checker-*"))  # the checker's scratch dir is removed


def test_corpus_is_large_enough():
    assert len(HOSTILE) >= 20


HONEST = """
import collections, statistics
from dataclasses import dataclass

@dataclass
class Total:
    amount: float

def check(initial_db, final_db, transcript):
    before = Total(sum(o["amount"] for o in initial_db["orders"]))
    after = Total(sum(o["amount"] for o in final_db["orders"]))
    said = collections.Counter(m["role"] for m in transcript)
    with open("scratch.txt", "w") as f:  # scratch files in the temp dir are allowed
        f.write(str(after.amount))
    return after.amount - before.amount == {delta} and said["assistant"] >= 1 \\
        and statistics.mean([1, 2, 3]) == 2
"""


@pytest.mark.parametrize("seed", range(4))
def test_honest_checker_agrees_with_direct_computation(seed):
    rng = random.Random(seed)
    initial = {"orders": [{"amount": rng.randint(1, 100)} for _ in range(rng.randint(1, 20))]}
    final = {"orders": initial["orders"] + [{"amount": rng.randint(1, 100)}]}
    transcript = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
    delta = final["orders"][-1]["amount"]
    for claimed in (delta, delta + 1):  # the right delta passes, a wrong one fails
        verdict = run_code_checker(HONEST.format(delta=claimed), initial, final, transcript, LIMITS)
        expected = (
            sum(o["amount"] for o in final["orders"]) - sum(o["amount"] for o in initial["orders"])
            == claimed
        )
        assert verdict.status == ("pass" if expected else "fail"), verdict
        assert verdict.components == {"CODE": float(expected)}


def test_environment_is_scrubbed_and_inputs_are_copies(monkeypatch):
    monkeypatch.setenv("EIGEN_SECRET_TOKEN", "hunter2")
    source = (
        "import os\ndef check(a, b, t):\n    a['x'] = 99\n"
        "    return ('EIGEN_SECRET_TOKEN' not in os.environ\n"
        "            and os.getcwd() == os.environ['HOME'])\n"
    )
    initial = {"x": 1}
    assert run_code_checker(source, initial, {}, [], LIMITS).status == "pass"
    assert initial == {"x": 1}


def test_privileges_are_dropped_when_root():
    if os.geteuid() != 0:
        pytest.skip("uid isolation needs root")
    source = "import os\ndef check(a, b, t):\n    return os.getuid() != 0 and os.getgid() != 0\n"
    assert run_code_checker(source, {}, {}, [], LIMITS).status == "pass"


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="non-empty"):
        run_code_checker("", {}, {}, [])
    with pytest.raises(TypeError, match="JSON"):
        run_code_checker("def check(a, b, t): return True", {"x": object()}, {}, [])
    with pytest.raises(ValueError, match="cpu_s"):
        SandboxLimits(cpu_s=0)
