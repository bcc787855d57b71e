"""launch/serve.py as a user runs it: serving, --export_only, and one-line errors on a bad
checkpoint (subprocesses on one CPU device)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import load_file

from eigen_jax.serve import CheckpointError, check_checkpoint_dir
from tests.fixtures.launch_serve import launched_server

REPO = Path(__file__).resolve().parents[3]
SERVE = [sys.executable, str(REPO / "launch" / "serve.py")]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")


def launch(*args, timeout=300):
    return subprocess.run(
        SERVE + list(args),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def last_line(text):
    return [line for line in text.strip().splitlines() if line.strip()][-1]


def test_checkpoint_dir_checks_name_the_problem(tmp_path, serve_checkpoint):
    with pytest.raises(CheckpointError, match="does not exist"):
        check_checkpoint_dir(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        check_checkpoint_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        check_checkpoint_dir(tmp_path)
    assert check_checkpoint_dir(serve_checkpoint) == str(serve_checkpoint)


def test_missing_and_corrupt_checkpoints_exit_with_one_line(tmp_path, serve_checkpoint):
    out = launch("--checkpoint", str(tmp_path / "missing"))
    assert out.returncode != 0
    assert last_line(out.stderr) == (
        f"error: checkpoint directory {str(tmp_path / 'missing')!r} does not exist"
    )
    corrupt = tmp_path / "corrupt"
    shutil.copytree(serve_checkpoint, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    out = launch("--checkpoint", str(corrupt), "--export_only")
    assert out.returncode != 0
    assert last_line(out.stderr).startswith(f"error: cannot load checkpoint {str(corrupt)!r}")
    assert "Traceback" not in out.stderr


def test_export_only_writes_sglang_checkpoint_and_prints_commands(tmp_path, serve_checkpoint):
    export = tmp_path / "export"
    out = launch(
        "--checkpoint",
        str(serve_checkpoint),
        "--export_only",
        "--export_dir",
        str(export),
        "--port",
        "31234",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    path = str(export.resolve())
    for command in ("-m sgl_jax.launch_server", "-m sglang.launch_server"):
        lines = [x for x in out.stdout.splitlines() if command in x]
        assert lines and all(
            f"--model-path {path} " in x
            and "--port 31234" in x
            and "--tool-call-parser qwen25" in x
            for x in lines
        )
    original = load_file(str(serve_checkpoint / "model.safetensors"))
    exported = load_file(str(export / "model.safetensors"))
    assert sorted(original) == sorted(exported)
    for name, value in original.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    assert json.loads((export / "config.json").read_text())["vocab_size"] == 384
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (export / name).read_bytes() == (serve_checkpoint / name).read_bytes()


@pytest.mark.slow  # ~20 s: a second process loads and compiles; the app is tested in-process
def test_launch_serves_generate(serve_checkpoint):
    with launched_server(serve_checkpoint, "--num_slots", "2") as url:
        body = {
            "input_ids": [5, 6, 7],
            "sampling_params": {"temperature": 0, "max_new_tokens": 5, "ignore_eos": True},
        }
        out = httpx.post(url + "/generate", json=body, timeout=120).json()
        assert len(out["output_ids"]) == 5
        info = httpx.get(url + "/get_model_info", timeout=10).json()
        # no --max_len: the model's own context (the tiny config's max_position_embeddings)
        context = json.loads((serve_checkpoint / "config.json").read_text())
        assert info["max_len"] == context["max_position_embeddings"] == 512
        assert info["num_slots"] == 2


@pytest.mark.parametrize(
    "flag, value", [("--port", "70000"), ("--port", "0"), ("--num_slots", "0"), ("--max_len", "-1")]
)
def test_out_of_range_flags_are_refused_naming_the_flag(tmp_path, flag, value):
    out = launch("--checkpoint", str(tmp_path), flag, value, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert f"{flag}={value}" in out.stderr and "Flags parsing error" in out.stderr


def test_serve_refuses_a_port_the_os_would_truncate():
    from eigen_jax.serve.app import serve

    for port in (70000, 0, -1, True):
        with pytest.raises(ValueError, match="port must be an integer in 1..65535"):
            serve(None, port=port)
