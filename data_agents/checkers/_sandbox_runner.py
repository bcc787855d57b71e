"""Child side of the code-checker sandbox: `python -I -S -B runner.py SCRATCH RESULT_FD`, run by
bubblewrap inside the OS walls of `bwrap.py` (namespaces, read-only minimal filesystem, seccomp).

Standard library only. Everything here is defence in depth: the checker runs in this interpreter
and may rewrite any module, so nothing below is what keeps it in — the OS walls are. Order:
1. read the request from SCRATCH/request.json and delete it;
2. pre-import the modules a checker may use (later imports are audit violations);
3. resource limits, then a second seccomp program (no exec, no new processes; `seccomp.py`);
4. compile the checker, install the audit hook (its primitives bound as default arguments, so
   replacing `os._exit`, `os.path` or this module's globals does not switch it off), call
   `check`, and write the returned value's one-byte code to RESULT_FD: b"T" for True, b"F" for
   False, b"E" + reason otherwise. The trusted parent alone turns that into a verdict, and only
   b"T" from a clean exit is a pass; nothing the checker prints on stdout counts.
"""

import base64
import json
import os
import resource
import sys

VIOLATION_EXIT = 86
ALLOWED_MODULES = (
    "json",
    "re",
    "math",
    "cmath",
    "datetime",
    "_strptime",
    "time",
    "calendar",
    "collections",
    "collections.abc",
    "itertools",
    "functools",
    "operator",
    "statistics",
    "decimal",
    "fractions",
    "string",
    "typing",
    "dataclasses",
    "copy",
    "enum",
    "difflib",
    "unicodedata",
    "textwrap",
    "numbers",
    "heapq",
    "bisect",
    "random",
    "hashlib",
    "base64",
    "zoneinfo",
    "pprint",
    "encodings.idna",
    "encodings.utf_8",
    "encodings.latin_1",
    "encodings.ascii",
    "gc",
    "signal",
    "threading",  # harmless to import; what they can do that is not is audited
)
# Audit events (PEP 578) a checker has no business raising.
FORBIDDEN_PREFIXES = (
    "socket.",
    "ctypes.",
    "subprocess.",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.fork",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "shutil.",
    "gc.get_",
    "sys._getframe",
    "sys._current_frames",
    "sys.settrace",
    "sys.setprofile",
    "sys.remote_exec",
    "resource.setrlimit",
    "resource.prlimit",
    "pty.",
    "mmap.",
    "os.chdir",
    "os.chmod",
    "os.chown",
    "os.chflags",
    "os.link",
    "os.symlink",
    "os.rename",
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.truncate",
    "os.utime",
    "os.listdir",
    "os.scandir",
    "os.walk",
    "os.fwalk",
    "glob.",
    "os.system",
    "os.startfile",
    "import",
    "builtins.input",
    "sys.addaudithook",
    "cpython.run_",
    "code.__new__",
    "sqlite3.",
    "webbrowser.",
    "winreg.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "telnetlib.",
)
# Attribute reads audited as `object.__getattr__` that lead to frames (so to main()'s locals).
FRAME_ATTRIBUTES = frozenset(
    {
        "tb_frame",
        "gi_frame",
        "cr_frame",
        "ag_frame",
        "f_back",
        "f_locals",
        "f_globals",
        "f_builtins",
    }
)


def _set_limits(limits):
    for res, value in (
        (resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1)),
        (resource.RLIMIT_AS, (limits["memory_bytes"],) * 2),
        (resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2),
        (resource.RLIMIT_NOFILE, (32, 32)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(res, value)


def _no_spawn(program):
    """Load the no-exec/no-process seccomp program (stacked on bwrap's; filters only add)."""
    import ctypes  # purged from sys.modules afterwards; a checker importing it trips the guard

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    prog = SockFprog(len(program) // 8, program)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "could not load the no-spawn seccomp program")
    for name in [m for m in sys.modules if m == "_ctypes" or m.startswith("ctypes")]:
        del sys.modules[name]


def _inside(path, prefix, _type=type, _str=str):
    """Whether `path` (absolute or relative to the scratch cwd) stays under `prefix`; plain str
    operations only, so a checker rewriting os.path cannot change the answer."""
    if _type(path) is not _str or "\x00" in path:
        return False
    parts = []
    for part in (path if path.startswith("/") else prefix + path).split("/"):
        if part == "..":
            if not parts:
                return False
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return ("/" + "/".join(parts) + "/").startswith(prefix)


def _make_guard(
    prefix,
    _write=os.write,
    _exit=os._exit,
    _inside=_inside,
    _str=str,
    _repr=repr,
    _forbidden=FORBIDDEN_PREFIXES,
    _frames=FRAME_ATTRIBUTES,
):
    """The audit hook; every name it uses is bound here, at creation, not looked up later."""

    def guard(event, hook_args):
        if event == "open":
            if _inside(hook_args[0], prefix):
                return
            why = "open(" + _repr(hook_args[0])[:200] + ")"
        elif _str.startswith(event, _forbidden):
            why = event + "(" + (_repr(hook_args[0])[:120] if hook_args else "") + ")"
        elif event == "object.__getattr__" and hook_args[1] in _frames:
            why = "frame introspection (." + _str(hook_args[1]) + ")"
        else:
            return
        _write(2, ("\nsandbox violation: " + why + "\n").encode())
        _exit(VIOLATION_EXIT)

    return guard


def main(_write=os.write, _exit=os._exit, _type=type, _str=str):
    scratch, result_fd = sys.argv[1], int(sys.argv[2])
    request_path = os.path.join(scratch, "request.json")
    with open(request_path, "rb") as f:
        request = json.loads(f.read())
    os.remove(request_path)
    for name in ALLOWED_MODULES:
        __import__(name)
    _set_limits(request["limits"])
    _no_spawn(base64.b64decode(request["no_spawn_filter"]))
    source, args = request.pop("source"), request.pop("args")
    del request

    def answer(code, detail=""):
        _write(result_fd, code + _str(detail)[:1000].encode("utf-8", "replace"))
        _exit(0)

    try:
        code = compile(source, "<checker>", "exec")
    except (SyntaxError, ValueError) as e:
        answer(b"E", f"checker does not compile: {type(e).__name__}: {e}")
    namespace = {"__name__": "checker"}
    sys.addaudithook(_make_guard(scratch.rstrip("/") + "/"))
    try:
        exec(code, namespace)
        check = namespace.get("check")
        if not callable(check):
            answer(b"E", "checker source defines no callable `check`")
        result = check(*args)
    except BaseException as e:  # noqa: B036 - SystemExit/KeyboardInterrupt are checker errors too
        answer(b"E", f"check raised {_type(e).__name__}: {e}")
    if result is True:
        answer(b"T")
    if result is False:
        answer(b"F")
    answer(b"E", f"check returned {_type(result).__name__}, expected bool")


if __name__ == "__main__":
    main()
