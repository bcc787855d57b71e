"""Seccomp-BPF programs for the code-checker sandbox, built from a deny list with `struct` alone.

Why hand-built: the filters are tiny deny lists, bubblewrap (`--seccomp FD`) takes the compiled
program as bytes, and the child side (`_sandbox_runner.py`) must stay standard-library only, so a
libseccomp binding would buy nothing but a dependency. Two programs:
- `base_filter()`, loaded by bubblewrap before the runner starts: kernel attack surface a checker
  never needs (sockets, ptrace, mounts, namespaces, keyrings, bpf, io_uring, modules, ...) kills
  the whole process (SIGSYS), so an attempt is an error verdict, never a quiet failure the checker
  could paper over; `clone3` answers ENOSYS (glibc then falls back to `clone`, whose flags a
  classic BPF filter can read) and `clone` with any CLONE_NEW* flag kills.
- `no_spawn_filter()`, loaded by the runner just before the checker's code runs: no `execve`, no
  new processes (`fork`/`vfork`, `clone` without CLONE_THREAD); threads stay possible.
Unknown architectures have no table: the caller fails closed (`SeccompUnsupported`).
"""

from __future__ import annotations

import platform
import struct

# Syscall numbers from the kernel's uapi headers (asm/unistd_64.h for x86_64,
# asm-generic/unistd.h for aarch64); tests/data_agents/checkers/test_seccomp.py checks them
# against the headers when those are installed.
SYSCALLS = {
    "x86_64": {
        "socket": 41,
        "socketpair": 53,
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "chroot": 161,
        "unshare": 272,
        "setns": 308,
        "keyctl": 250,
        "add_key": 248,
        "request_key": 249,
        "bpf": 321,
        "perf_event_open": 298,
        "userfaultfd": 323,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "personality": 135,
        "open_by_handle_at": 304,
        "name_to_handle_at": 303,
        "fsopen": 430,
        "fsmount": 432,
        "move_mount": 429,
        "open_tree": 428,
        "fsconfig": 431,
        "fspick": 433,
        "mount_setattr": 442,
        "pidfd_getfd": 438,
        "quotactl": 179,
        "acct": 163,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "syslog": 103,
        "settimeofday": 164,
        "clock_settime": 227,
        "adjtimex": 159,
        "vhangup": 153,
        "lookup_dcookie": 212,
        "iopl": 172,
        "ioperm": 173,
        "clone": 56,
        "clone3": 435,
        "fork": 57,
        "vfork": 58,
        "execve": 59,
        "execveat": 322,
    },
    "aarch64": {
        "socket": 198,
        "socketpair": 199,
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "chroot": 51,
        "unshare": 97,
        "setns": 268,
        "keyctl": 219,
        "add_key": 217,
        "request_key": 218,
        "bpf": 280,
        "perf_event_open": 241,
        "userfaultfd": 282,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "personality": 92,
        "open_by_handle_at": 265,
        "name_to_handle_at": 264,
        "fsopen": 430,
        "fsmount": 432,
        "move_mount": 429,
        "open_tree": 428,
        "fsconfig": 431,
        "fspick": 433,
        "mount_setattr": 442,
        "pidfd_getfd": 438,
        "quotactl": 60,
        "acct": 89,
        "swapon": 224,
        "swapoff": 225,
        "reboot": 142,
        "syslog": 116,
        "settimeofday": 170,
        "clock_settime": 112,
        "adjtimex": 171,
        "vhangup": 58,
        "lookup_dcookie": 18,
        "clone": 220,
        "clone3": 435,
        "execve": 221,
        "execveat": 281,
    },
}
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000  # x86_64's x32 ABI: a second syscall table a filter must not miss
KERNEL_SURFACE = (
    "socket",
    "socketpair",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "personality",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsmount",
    "move_mount",
    "open_tree",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "pidfd_getfd",
    "quotactl",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "vhangup",
    "lookup_dcookie",
    "iopl",
    "ioperm",
)
CLONE_NEW_FLAGS = (
    0x00020000
    | 0x02000000
    | 0x04000000
    | 0x08000000
    | 0x10000000
    | 0x20000000
    | 0x40000000
    | 0x00000080
)  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWTIME
CLONE_THREAD = 0x00010000

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
LD_W_ABS, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
RET_KILL_PROCESS, RET_ALLOW, RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000
ENOSYS = 38
NR_OFFSET, ARCH_OFFSET, ARG0_OFFSET = 0, 4, 16  # struct seccomp_data; arg0's low word (LE)


class SeccompUnsupported(RuntimeError):
    """No syscall table for this machine's architecture: the sandbox cannot be built."""


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _arch() -> str:
    machine = platform.machine()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)
    if machine not in SYSCALLS:
        raise SeccompUnsupported(
            f"checker sandbox: no seccomp syscall table for architecture "
            f"{machine!r} (supported: {', '.join(sorted(SYSCALLS))})"
        )
    return machine


def _program(
    kill: list[str], clone_kill_mask: int | None, clone_needs_thread: bool, errno_enosys: list[str]
) -> bytes:
    """Arch check, then one `jeq` per listed syscall, then the `clone` flag checks, then allow."""
    arch = _arch()
    table = SYSCALLS[arch]
    body = [
        _insn(LD_W_ABS, ARCH_OFFSET),
        _insn(JEQ_K, AUDIT_ARCH[arch], jt=1),
        _insn(RET_K, RET_KILL_PROCESS),
        _insn(LD_W_ABS, NR_OFFSET),
    ]
    if arch == "x86_64":
        body += [_insn(JGE_K, X32_SYSCALL_BIT, jf=1), _insn(RET_K, RET_KILL_PROCESS)]
    for name in kill:
        if name in table:
            body += [_insn(JEQ_K, table[name], jf=1), _insn(RET_K, RET_KILL_PROCESS)]
    for name in errno_enosys:
        body += [_insn(JEQ_K, table[name], jf=1), _insn(RET_K, RET_ERRNO | ENOSYS)]
    if clone_kill_mask is not None or clone_needs_thread:
        checks = [_insn(LD_W_ABS, ARG0_OFFSET)]
        if clone_kill_mask is not None:
            checks += [_insn(JSET_K, clone_kill_mask, jf=1), _insn(RET_K, RET_KILL_PROCESS)]
        if clone_needs_thread:
            checks += [_insn(JSET_K, CLONE_THREAD, jt=1), _insn(RET_K, RET_KILL_PROCESS)]
        checks.append(_insn(RET_K, RET_ALLOW))
        body += [_insn(JEQ_K, table["clone"], jf=len(checks))] + checks
    body.append(_insn(RET_K, RET_ALLOW))
    return b"".join(body)


def base_filter() -> bytes:
    """The filter bubblewrap loads before the runner's interpreter starts (see module doc)."""
    return _program(list(KERNEL_SURFACE), CLONE_NEW_FLAGS, False, ["clone3"])


def no_spawn_filter() -> bytes:
    """The runner's second filter: the checker may neither exec nor start processes."""
    return _program(["execve", "execveat", "fork", "vfork"], None, True, [])
