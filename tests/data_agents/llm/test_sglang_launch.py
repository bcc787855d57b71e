"""The sglang-jax launch line the fixture and the benchmark build (no server needed)."""

from __future__ import annotations

import pathlib

from tests.fixtures.sglang_server import (
    TEST_FLAGS,
    TINY_QWEN3,
    _spec_digest,
    launch_command,
)


def _flags(cmd: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = None
    for arg in cmd[3:]:  # python -m sgl_jax.launch_server
        if arg.startswith("--"):
            current = arg
            out[current] = []
        else:
            out[current].append(arg)
    return out


def test_default_launch_is_the_documented_cpu_launch():
    cmd = launch_command(pathlib.Path("/venv/bin/python"), pathlib.Path("/m"), 31234)
    assert cmd[:3] == ["/venv/bin/python", "-m", "sgl_jax.launch_server"]
    flags = _flags(cmd)
    assert flags["--port"] == ["31234"] and flags["--model-path"] == ["/m"]
    assert flags["--device"] == ["cpu"] and flags["--attention-backend"] == ["native"]
    assert flags["--disable-precompile"] == []  # a bare switch
    assert flags["--tool-call-parser"] == ["qwen25"]
    assert len(flags) == len(TEST_FLAGS) + 3  # + host, port, model path


def test_overrides_replace_drop_and_extend_flags():
    cmd = launch_command(
        pathlib.Path("py"),
        pathlib.Path("/m"),
        1,
        {
            "--disable-precompile": None,  # dropped
            "--max-total-tokens": 16384,  # replaced
            "--precompile-bs-paddings": [1, 2, 4],  # several values
            "--context-length": 4096,  # added
        },
    )
    flags = _flags(cmd)
    assert "--disable-precompile" not in flags
    assert flags["--max-total-tokens"] == ["16384"]
    assert flags["--precompile-bs-paddings"] == ["1", "2", "4"]
    assert flags["--context-length"] == ["4096"]
    assert flags["--chunked-prefill-size"] == [str(TEST_FLAGS["--chunked-prefill-size"])]


def test_model_variants_get_their_own_cache_directory():
    base = _spec_digest(TINY_QWEN3, 512, ["a"])
    assert base == _spec_digest(dict(TINY_QWEN3), 512, ["a"])
    assert base != _spec_digest({**TINY_QWEN3, "max_position_embeddings": 8192}, 512, ["a"])
    assert base != _spec_digest(TINY_QWEN3, 1024, ["a"])
    assert base != _spec_digest(TINY_QWEN3, 512, ["a", "b"])
