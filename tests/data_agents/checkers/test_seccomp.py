"""The seccomp programs' syscall numbers against the kernel's own uapi headers (where installed),
and the programs' shape: every instruction 8 bytes, every jump inside the program."""

from __future__ import annotations

import os
import re
import struct

import pytest

from data_agents.checkers import seccomp

HEADERS = {
    "x86_64": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
    "aarch64": "/usr/include/asm-generic/unistd.h",
}


@pytest.mark.parametrize("arch", sorted(seccomp.SYSCALLS))
def test_syscall_numbers_match_kernel_headers(arch):
    if not os.path.exists(HEADERS[arch]):
        pytest.skip(f"{HEADERS[arch]} not installed (linux-libc-dev)")
    with open(HEADERS[arch]) as f:
        text = f.read()
    for name, number in seccomp.SYSCALLS[arch].items():
        match = re.search(rf"#define __NR(?:3264)?_{name}\s+(\d+)\b", text)
        assert match and int(match.group(1)) == number, (arch, name)


@pytest.mark.parametrize("build", [seccomp.base_filter, seccomp.no_spawn_filter])
def test_programs_are_well_formed(build):
    program = build()
    assert len(program) % 8 == 0
    insns = [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    for index, (code, jt, jf, _) in enumerate(insns):
        if code & 0x07 == 0x05:  # BPF_JMP: both targets inside the program
            assert index + 1 + max(jt, jf) < len(insns)
    assert insns[-1] == (seccomp.RET_K, 0, 0, seccomp.RET_ALLOW)  # default allow after denials
    assert insns[2] == (seccomp.RET_K, 0, 0, seccomp.RET_KILL_PROCESS)  # foreign arch: kill
