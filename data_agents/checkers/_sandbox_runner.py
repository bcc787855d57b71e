"""Child side of the code-checker sandbox. Runs as `python -I -S -B _sandbox_runner.py DIR`.

Standard library only, and nothing at module level worth stealing: all state lives in `main()`'s
locals, which the checker cannot reach because frame and garbage-collector introspection are
forbidden below. Order matters:
1. read the request from DIR/request.json and delete it (it holds the result nonce);
2. pre-import the modules a checker may use (later imports are violations, and after step 3
   the interpreter's own files may be unreadable);
3. while still privileged: a private network namespace (no interfaces but a down loopback),
   resource limits, then drop to a throw-away uid/gid with no supplementary groups and
   no_new_privs — OS-level walls that hold even if the Python-level guard is bypassed;
4. compile the checker, install the audit hook (any forbidden event kills the process at once,
   so a checker cannot catch the error and answer anyway), call `check`, print the result line
   carrying the nonce, and `os._exit` before any checker-registered exit handler can run.
"""
import json
import os
import resource
import sys

VIOLATION_EXIT = 86
ALLOWED_MODULES = (
    "json", "re", "math", "cmath", "datetime", "_strptime", "time", "calendar", "collections",
    "collections.abc", "itertools", "functools", "operator", "statistics", "decimal", "fractions",
    "string", "typing", "dataclasses", "copy", "enum", "difflib", "unicodedata", "textwrap",
    "numbers", "heapq", "bisect", "random", "hashlib", "base64", "zoneinfo", "pprint",
    "encodings.idna", "encodings.utf_8", "encodings.latin_1", "encodings.ascii",
    "gc", "signal", "threading",  # harmless to import; what they can do that is not is audited
)
# Audit events (PEP 578) a checker has no business raising.
FORBIDDEN_PREFIXES = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn",
                      "os.posix_spawn", "os.fork", "os.kill", "os.killpg", "signal.pthread_kill",
                      "shutil.", "gc.get_",
                      "sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile",
                      "sys.remote_exec", "resource.setrlimit", "resource.prlimit", "pty.", "mmap.",
                      "os.chdir", "os.chmod", "os.chown", "os.chflags", "os.link", "os.symlink",
                      "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.utime",
                      "os.listdir", "os.scandir", "os.walk", "os.fwalk", "glob.", "os.system",
                      "os.startfile", "import", "builtins.input", "sys.addaudithook",
                      "cpython.run_", "code.__new__", "sqlite3.", "webbrowser.", "winreg.",
                      "urllib.", "http.", "ftplib.", "smtplib.", "poplib.", "imaplib.",
                      "telnetlib.")
# Attribute reads audited as `object.__getattr__` that lead to frames (so to main()'s locals).
FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back",
                              "f_locals", "f_globals", "f_builtins"})


def _isolate(uid, tmpdir, limits, layers):
    """OS-level isolation; every layer that succeeds is named in `layers`."""
    if uid is not None and os.geteuid() == 0:
        import ctypes  # only while privileged; purged from sys.modules below
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) == 0:  # CLONE_NEWNET
            layers.append("netns")
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        del libc, ctypes
        for name in [m for m in sys.modules if m == "_ctypes" or m.startswith("ctypes")]:
            del sys.modules[name]
    for res, value in ((resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1)),
                       (resource.RLIMIT_AS, (limits["memory_bytes"],) * 2),
                       (resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2),
                       (resource.RLIMIT_NOFILE, (32, 32)),
                       (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(res, value)
    layers.append("rlimits")
    if uid is not None and os.geteuid() == 0:
        os.chown(tmpdir, uid, uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        layers.append("uid")


def main():
    tmpdir = sys.argv[1]
    request_path = os.path.join(tmpdir, "request.json")
    with open(request_path, "rb") as f:
        request = json.loads(f.read())
    os.remove(request_path)
    nonce = request.pop("nonce")
    for name in ALLOWED_MODULES:  # before dropping privileges: the stdlib may be unreadable after
        __import__(name)
    layers = []
    _isolate(request["uid"], tmpdir, request["limits"], layers)
    source, args = request.pop("source"), request.pop("args")
    del request

    def answer(status, detail=None):
        line = json.dumps({"nonce": nonce, "status": status, "detail": detail, "layers": layers})
        sys.stdout.flush()
        os.write(1, ("\n" + line + "\n").encode())
        os._exit(0)

    try:
        code = compile(source, "<checker>", "exec")
    except (SyntaxError, ValueError) as e:
        answer("error", f"checker does not compile: {type(e).__name__}: {e}")
    namespace = {"__name__": "checker"}
    prefix = tmpdir.rstrip("/") + "/"

    def guard(event, hook_args):
        if event == "open":
            path = hook_args[0]
            if isinstance(path, str) and os.path.abspath(path).startswith(prefix):
                return
            why = f"open({path!r})"
        elif event.startswith(FORBIDDEN_PREFIXES):
            why = f"{event}({repr(hook_args[0])[:120] if hook_args else ''})"
        elif event == "object.__getattr__" and hook_args[1] in FRAME_ATTRIBUTES:
            why = f"frame introspection (.{hook_args[1]})"
        else:
            return
        os.write(2, f"\nsandbox violation: {why}\n".encode())
        os._exit(VIOLATION_EXIT)

    sys.addaudithook(guard)
    try:
        exec(code, namespace)
        check = namespace.get("check")
        if not callable(check):
            answer("error", "checker source defines no callable `check`")
        result = check(*args)
    except BaseException as e:  # noqa: B036 - SystemExit/KeyboardInterrupt are checker errors too
        answer("error", f"check raised {type(e).__name__}: {str(e)[:500]}")
    if type(result) is not bool:
        answer("error", f"check returned {type(result).__name__}, expected bool")
    answer("pass" if result else "fail")


if __name__ == "__main__":
    main()
