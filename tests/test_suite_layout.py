"""The test suite's own scheduling table points at real modules (a renamed module would silently
drop out of the heavy-first order `make test` relies on)."""

from pathlib import Path

from tests.conftest import RUN_FIRST

REPO = Path(__file__).resolve().parents[1]


def test_run_first_modules_exist():
    missing = [m for m in RUN_FIRST if not (REPO / m).is_file()]
    assert not missing, f"tests/conftest.py RUN_FIRST names missing modules: {missing}"
