"""TFDS publishing of generation journals; see `eigen_dialogues`."""
from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds


def build_dataset(journal_dir: str | Path, data_dir: str | Path, config: str = "default"):
    """Publish the accepted records of every journal under `journal_dir` as array_record shards.

    Returns the prepared builder (use `builder.as_data_source()` to read it back).
    """
    from data_agents.tfds.eigen_dialogues import Builder

    builder = Builder(config=config, data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(journal_dir)))
    return builder
