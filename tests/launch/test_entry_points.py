"""The launchers as installed entry points: `--gin_file gin/...` resolves from any directory
(against the checkout, or the configs shipped inside the package), includes too, and a missing
gin file or checkpoint is one line and a non-zero exit from every console-script function."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
# What a gin file resolves to: the unscoped SFT step count that gin/test/sft_tiny.gin sets and
# gin/test/quickstart_tiny.gin reaches through `include`.
QUERY = """
import gin
from launch import common
common.parse_gin(["gin/test/quickstart_tiny.gin"], [], [])
print(common.config_root(), gin.query_parameter("run_sft.num_steps"))
"""


def python(code: str, cwd, pythonpath: str) -> subprocess.CompletedProcess:
    env = dict(ENV, PYTHONPATH=pythonpath)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_relative_gin_file_and_its_include_resolve_from_another_directory(tmp_path):
    out = python(QUERY, tmp_path, str(REPO))
    assert out.returncode == 0, out.stderr[-3000:]
    root, steps = out.stdout.split()
    assert (Path(root).resolve(), steps) == (REPO, "20")


def test_an_installed_layout_resolves_against_the_shipped_configs(tmp_path):
    """setup.py's layout (launch/ with gin/ inside it) outside the repository: the include is
    read from the shipped copy, which this test changes so the two are told apart."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "launch", site / "launch", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "gin", site / "launch" / "gin")
    with open(site / "launch" / "gin" / "test" / "sft_tiny.gin", "a") as f:
        f.write("\nrun_sft.num_steps = 7\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = python(QUERY, elsewhere, os.pathsep.join([str(site), str(REPO)]))
    assert out.returncode == 0, out.stderr[-3000:]
    root, steps = out.stdout.split()
    assert (Path(root).resolve(), steps) == ((site / "launch").resolve(), "7")


@pytest.mark.parametrize(
    "module, args, message",
    [
        ("train", ["--gin_file", "gin/nope.gin", "--workdir", "wd"], "gin file not found"),
        ("eval", ["--gin_file", "gin/nope.gin", "--workdir", "wd", "--agent_url", "http://x:1"],
         "eval: gin file not found"),
        ("generate_data", ["--gin_file", "gin/nope.gin", "--workdir", "wd"],
         "generate_data: gin file not found"),
        ("compile", ["--gin_file", "gin/nope.gin", "--topology", "v5p-8", "--workdir", "wd"],
         "compile: gin file not found"),
        ("serve", ["--checkpoint", "no_such_checkpoint"], "error:"),
    ],
)  # fmt: skip
def test_each_console_script_function_fails_on_bad_input_with_one_line(
    tmp_path, module, args, message
):
    """`launch.X:run` with the argv a console script gets, from a folder with no gin/ in it."""
    code = f"import sys; sys.argv = ['eigen', *{args!r}]; from launch.{module} import run; run()"
    out = python(code, tmp_path, str(REPO))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), out.stderr[-3000:]
    assert not (tmp_path / "wd").exists()
