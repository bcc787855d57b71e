"""The `eigen_dialogues` TFDS dataset (see eigen_dialogues_dataset_builder.py)."""

from data_agents.tfds.eigen_dialogues.eigen_dialogues_dataset_builder import (
    Builder,
    record_to_example,
)

__all__ = ["Builder", "record_to_example"]
