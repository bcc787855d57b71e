"""Every gin file parses against the registered configurables (typos fail here, not on a pod)."""

from pathlib import Path

import gin
import pytest

import launch.configurables  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
TRAIN_CONFIGS = sorted(p for p in (REPO / "gin").rglob("*.gin") if "data" not in p.parts)


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_parses(path):
    gin.clear_config()
    gin.add_config_file_search_path(str(REPO))
    try:
        gin.parse_config_files_and_bindings([str(path)], [], finalize_config=False)
    finally:
        gin.clear_config()


def test_unknown_binding_is_an_error():
    gin.clear_config()
    with pytest.raises(ValueError, match="not_a_knob"):
        gin.parse_config_files_and_bindings([], ["run_sft.not_a_knob = 1"])
    gin.clear_config()
