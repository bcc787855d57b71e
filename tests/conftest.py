"""Shared test set-up: 8 fake CPU devices, set before jax is imported anywhere."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# Modules whose tests (with their module fixtures) take minutes: handed to workers first, so
# none of them starts last and leaves one core idle (`make test` prints the slowest tests).
RUN_FIRST = (
    "tests/launch/test_quickstart.py",
    "tests/eigen_jax/rl/test_learner_fns.py",
    "tests/eigen_jax/rl/test_rollout.py",
    "tests/eigen_jax/rl/test_grpo.py",
)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into groups
def pytest_collection_modifyitems(config, items):
    """Under `pytest -n 2 --dist loadgroup` (what `make test` runs) a module is one xdist group,
    so a module-scoped fixture (the scaled-down quickstart, a trained tiny model) is built once,
    and every test that needs the real sglang-jax server shares one group, so one worker starts
    one server (its scheduler busy-spins a core). Serial runs ignore the marks; the heavy-first
    order applies to them too."""

    def group(item):
        return (
            "sglang-server" if "sglang_server" in item.fixturenames else item.nodeid.split("::")[0]
        )

    rank = {path: i for i, path in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(group(item), len(rank)))  # stable: the rest keep order
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
