"""Tiny random HF checkpoints shared by the model tests (written once per session)."""

import pytest

from tests.fixtures.tiny_hf import TINY_FAMILIES, make_tiny_hf_checkpoint, tiny_hf_model


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """family -> directory of a float32 tiny checkpoint (seed 0)."""
    root = tmp_path_factory.mktemp("tiny_hf")
    return {fam: make_tiny_hf_checkpoint(str(root / fam), fam) for fam in TINY_FAMILIES}


@pytest.fixture(scope="session")
def tiny_references():
    """family -> the transformers model whose weights the checkpoint holds."""
    return {fam: tiny_hf_model(fam) for fam in TINY_FAMILIES}
