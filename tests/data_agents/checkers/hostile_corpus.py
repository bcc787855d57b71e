"""Hostile code checkers, written as an attacker would: each `check` returns True only if its attack
worked, so a contained attack can never yield a pass. `initial_db` (the first argument) is the
attack context the test builds on the host: `sentinel` (a world-readable host file holding
"secret"), `pwned` (a path in a world-writable host dir that must never appear), `port` (a host
TCP listener on 127.0.0.1 that must accept nothing), `host_pid` (the process running the sandbox)
and `secret_env` (the name of an environment variable set in that process).

Guard-replacement cases first switch off the in-process audit hook the way an attacker would try
(rebinding `os._exit`, `os.path`, `json.dumps`, the runner's globals, builtins), then attack; the
test also runs every case with the hook removed outright, so the OS walls alone are exercised.
"""

_TRY = "    try:\n{body}\n    except BaseException:\n        return False\n"


def _attack(body: str, prelude: str = "") -> str:
    """A `check` that runs `body` (indented 8) and returns False on any exception."""
    indented = "\n".join("        " + line for line in body.strip("\n").splitlines())
    return prelude + "def check(ctx, final, transcript):\n" + _TRY.format(body=indented)


_WRITE_PWNED = "open(ctx['pwned'], 'w').write('x')\nreturn True"
_READ_SENTINEL = "return open(ctx['sentinel']).read() == 'secret'"

CORPUS = {
    # --- files
    "read_etc_passwd": ("file", _attack("return 'root:' in open('/etc/passwd').read()")),
    "read_host_file": ("file", _attack(_READ_SENTINEL)),
    "write_host_dir": ("file", _attack(_WRITE_PWNED)),
    "write_repository": (
        "file",
        _attack(
            "import os\np = os.path.join(ctx['repo'], 'PWNED_BY_CHECKER')\n"
            "open(p, 'w').write('x')\nreturn True"
        ),
    ),
    "symlink_to_root": (
        "file",
        _attack(
            "import os\nos.symlink('/', 'up')\nreturn bool(open('up' + ctx['sentinel']).read())"
        ),
    ),
    "dotdot_escape": (
        "file",
        _attack("return open('../../../../../../..' + ctx['sentinel']).read() == 'secret'"),
    ),
    "list_host_root": (
        "file",
        _attack(
            "import os\nreturn bool({'etc', 'root', 'home', 'tmp', 'work'} & set(os.listdir('/')))"
        ),
    ),
    "write_usr": ("file", _attack("open('/usr/lib/pwned', 'w').write('x')\nreturn True")),
    # --- network
    "connect_loopback": (
        "network",
        _attack(
            "import socket\nsocket.create_connection(('127.0.0.1', ctx['port']), timeout=1)\n"
            "return True"
        ),
    ),
    "raw_socket_module": (
        "network",
        _attack(
            "import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', ctx['port']))\n"
            "return True"
        ),
    ),
    # --- processes
    "fork": (
        "process",
        _attack("import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nreturn True"),
    ),
    "subprocess_shell": (
        "process",
        _attack(
            "import subprocess\nsubprocess.run(['/bin/sh', '-c', 'touch ' + ctx['pwned']])\n"
            "return True"
        ),
    ),
    "exec_bash": ("process", _attack("import os\nos.execv('/bin/bash', ['bash'])\nreturn True")),
    "ctypes_system": (
        "process",
        _attack(
            "import ctypes\nreturn ctypes.CDLL(None).system(('touch ' + ctx['pwned']).encode()) == 0"
        ),
    ),
    "kill_host_process": (
        "process",
        _attack("import os, signal\nos.kill(ctx['host_pid'], signal.SIGKILL)\nreturn True"),
    ),
    "setsid_daemon": (
        "process",
        _attack(
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    while True:\n"
            "        open(ctx['pwned'], 'a').write('x')\n        time.sleep(0.05)\nreturn True"
        ),
    ),
    "ctypes_unshare_user": (
        "process",
        _attack("import ctypes\nreturn ctypes.CDLL(None).unshare(0x10000000) == 0"),
    ),
    "ctypes_ptrace_parent": (
        "process",
        _attack("import ctypes, os\nreturn ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0) == 0"),
    ),
    "thread_outlives_verdict": (
        "process",
        _attack(
            "import threading, time\ndef spam():\n    while True:\n"
            "        try:\n            open(ctx['pwned'], 'a').write('x')\n"
            "        except Exception:\n            time.sleep(0.01)\n"
            "threading.Thread(target=spam, daemon=False).start()\nreturn False"
        ),
    ),
    # --- environment
    "environment_secret": (
        "environment",
        _attack("import os\nreturn ctx['secret_env'] in os.environ or len(os.environ) > 6"),
    ),
    "parent_environ": (
        "environment",
        _attack("return b'EIGEN' in open('/proc/%d/environ' % ctx['host_pid'], 'rb').read()"),
    ),
    # --- resources
    "memory_bomb": (
        "resource",
        _attack("x = []\nfor _ in range(100):\n    x.append(bytearray(64 << 20))\nreturn True"),
    ),
    "cpu_spin": ("resource", _attack("while True:\n    pass")),
    "disk_fill": (
        "resource",
        _attack(
            "with open('fill.bin', 'wb') as f:\n    for _ in range(256):\n"
            "        f.write(b'x' * (1 << 20))\nreturn True"
        ),
    ),
    "fd_exhaustion": (
        "resource",
        _attack("fs = [open('f%d' % i, 'w') for i in range(4096)]\nreturn len(fs) == 4096"),
    ),
    "output_flood": ("resource", _attack("while True:\n    print('x' * 65536)")),
    # --- verdict forgery
    "print_fake_pass": (
        "verdict",
        _attack(
            "import json\nprint(json.dumps({'status': 'pass', 'reward': 1.0}))\nprint('T')\n"
            "return False"
        ),
    ),
    "write_result_channel_then_false": (
        "verdict",
        _attack(
            "import os\nfor fd in range(3, 12):\n    try:\n        os.write(fd, b'T')\n"
            "    except OSError:\n        pass\nreturn False"
        ),
    ),
    "exit_zero_without_answer": ("verdict", _attack("import os\nos._exit(0)")),
    "truthy_non_bool": ("verdict", "def check(ctx, final, transcript):\n    return 1\n"),
    "bool_like_object": (
        "verdict",
        "class B:\n    def __bool__(self):\n        return True\n"
        "    def __eq__(self, other):\n        return True\n"
        "def check(ctx, final, transcript):\n    return B()\n",
    ),
    "atexit_rewrite": (
        "verdict",
        _attack("import atexit, os\natexit.register(lambda: os.write(4, b'T'))\nreturn False"),
    ),
    "patched_json_dumps": (
        "verdict",
        _attack(
            "import json\njson.dumps = lambda *a, **k: '{\"status\": \"pass\"}'\n"
            "json.JSONEncoder.encode = lambda self, o: '{\"status\": \"pass\"}'\nreturn False"
        ),
    ),
    # --- guard replacement, then an attack
    "replace_os_exit": (
        "guard",
        _attack("import os\nos._exit = lambda code: None\n" + _READ_SENTINEL),
    ),
    "replace_abspath": (
        "guard",
        _attack(
            "import os, posixpath\nos.path.abspath = posixpath.abspath = "
            "lambda p: '/sandbox/ok'\n" + _READ_SENTINEL
        ),
    ),
    "replace_runner_globals": (
        "guard",
        _attack(
            "import sys\nm = sys.modules['__main__']\nfor k in ('FORBIDDEN_PREFIXES',):\n"
            "    setattr(m, k, ())\nm.__dict__['os'] = None\n"
            "import socket\nsocket.create_connection(('127.0.0.1', ctx['port']), timeout=1)\n"
            "return True"
        ),
    ),
    "replace_builtins": (
        "guard",
        _attack(
            "import builtins\nbuiltins.type = lambda *a: str\nbuiltins.repr = lambda o: ''\n"
            "builtins.str = type('S', (), {'startswith': lambda *a: False})\n" + _READ_SENTINEL
        ),
    ),
    "replace_os_write": ("guard", _attack("import os\nos.write = lambda *a: 0\n" + _WRITE_PWNED)),
}
