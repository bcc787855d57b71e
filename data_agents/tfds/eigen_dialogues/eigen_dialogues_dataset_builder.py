"""TFDS builder: synthesised dialogues (accepted journal records) → versioned array_record shards.

Journals are read from the builder's `manual_dir` (every `*.jsonl` under it, merged by key, so
several workers' journals publish as one dataset). Nested structure that TFDS could only store as
ragged tensors (which need TensorFlow) is kept as JSON text: tool calls per message, the task, the
tool schemas, the verdict and provenance. Reading needs no TensorFlow:
`tfds.data_source("eigen_dialogues/<config>", data_dir=...)` or `builder.as_data_source()`.

    python -m data_agents.tfds build data_agents/tfds/eigen_dialogues --manual_dir JOURNALS \
        --data_dir OUT --file_format array_record [--config NAME]

is `tfds build` with the same flags (`tfds build` itself imports TensorFlow; see
`data_agents/tfds/__main__.py`); `--manual_dir data_agents/tfds/eigen_dialogues/dummy_data`
builds the folder's fake data (2 train, 1 test). The folder is laid out as `tfds new` lays one
out (README.md, CITATIONS.bib, TAGS.txt, checksums.tsv, dummy_data/); its builder test, which
runs without TensorFlow, is tests/data_agents/tfds/test_builder_folder.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_agents.journal import read_journals
from data_agents.records import DialogueRecord


def _dumps(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False, sort_keys=True)


def record_to_example(r: DialogueRecord) -> dict[str, Any]:
    prov = r.provenance or {}
    return {
        "key": r.key,
        "domain": r.domain,
        "task_id": str(r.task.get("id", "")),
        "task_json": _dumps(r.task),
        "tools_json": _dumps(r.tools),
        "user_tools_json": _dumps(r.user_tools),
        "policy": r.policy,
        "messages": [
            {
                "role": m["role"],
                "content": m["content"],
                "tool_calls_json": _dumps(m.get("tool_calls", [])),
                "tool_call_id": m.get("tool_call_id", ""),
            }
            for m in r.messages
        ],
        "checker_source": r.checker_source or "",
        "verdict_json": _dumps(r.verdict or {}),
        "reward": np.float32((r.verdict or {}).get("reward", 0.0)),
        "round": np.int32(prov.get("round", 0)),
        "provenance_json": _dumps(prov),
    }


class Builder(tfds.core.GeneratorBasedBuilder):
    """EigenData-style synthetic multi-turn tool-use dialogues with executable checkers."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: dialogues, tau2 tasks, tool schemas, checkers."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point --manual_dir at the directory of generation journals (*.jsonl) written by "
        "`launch/generate_data.py`."
    )
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="default", description="all domains")]

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "key": text,
                    "domain": text,
                    "task_id": text,
                    "task_json": text,
                    "tools_json": text,
                    "user_tools_json": text,
                    "policy": text,
                    "messages": tfds.features.Sequence(
                        {
                            "role": text,
                            "content": text,
                            "tool_calls_json": text,
                            "tool_call_id": text,
                        }
                    ),
                    "checker_source": text,
                    "verdict_json": text,
                    "reward": np.float32,
                    "round": np.int32,
                    "provenance_json": text,
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        manual = Path(dl_manager.manual_dir)
        journals = sorted(manual.rglob("*.jsonl"))
        if not journals:
            raise FileNotFoundError(f"no journals (*.jsonl) under manual_dir {manual}")
        splits: dict[str, list[DialogueRecord]] = {}
        for r in read_journals(journals):
            if r.status == "accepted":
                splits.setdefault(r.split, []).append(r)
        if not splits:
            raise ValueError(f"journals under {manual} hold no accepted records")
        return {name: self._generate_examples(recs) for name, recs in sorted(splits.items())}

    def _generate_examples(self, records: list[DialogueRecord]):
        for r in records:
            yield r.key, record_to_example(r)
