"""The `eigen_dialogues` builder folder as `tfds new` lays one out, tested without TensorFlow.

tfds' own `DatasetBuilderTestCase` subclasses `tf.test.TestCase` and reads through `tf.data`, so
it cannot run here; this checks what it checks, the TF-free way: the builder is registered, its
metadata comes from the folder (README.md, CITATIONS.bib, TAGS.txt with tfds' valid tags), and
building the folder's `dummy_data/` with the documented command gives the expected split sizes
(rejected and duplicate journal records left out), each example decoding to its journal record.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from data_agents.tfds.eigen_dialogues import Builder, record_to_example

REPO = Path(__file__).resolve().parents[3]
FOLDER = REPO / "data_agents" / "tfds" / "eigen_dialogues"
SPLITS = {"train": 2, "test": 1}  # DatasetBuilderTestCase.SPLITS for dummy_data/


def test_folder_has_what_tfds_new_lays_out():
    for name in (
        "__init__.py",
        "README.md",
        "CITATIONS.bib",
        "TAGS.txt",
        "checksums.tsv",
        "eigen_dialogues_dataset_builder.py",
    ):
        assert (FOLDER / name).is_file(), name
    assert sorted(p.suffix for p in (FOLDER / "dummy_data").iterdir()) == [".jsonl", ".jsonl"]


def test_registered_and_metadata_from_the_folder():
    from tensorflow_datasets.core import dataset_metadata

    assert "eigen_dialogues" in tfds.list_builders(with_community_datasets=False)
    assert tfds.builder_cls("eigen_dialogues") is Builder
    meta = dataset_metadata.load(FOLDER)
    assert meta.tags and set(meta.tags) <= set(dataset_metadata.valid_tags())
    assert meta.citation.strip() == (FOLDER / "CITATIONS.bib").read_text().strip()
    assert meta.description.strip() == (FOLDER / "README.md").read_text().strip()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The builder docstring's command on dummy_data/ (tfds build's flags, no TensorFlow)."""
    out = tmp_path_factory.mktemp("tfds")
    cmd = [
        sys.executable,
        "-m",
        "data_agents.tfds",
        "build",
        str(FOLDER),
        "--manual_dir",
        str(FOLDER / "dummy_data"),
        "--data_dir",
        str(out),
        "--file_format",
        "array_record",
    ]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_dummy_data_builds_the_expected_splits(built):
    builder = tfds.builder_from_directory(str(built / "eigen_dialogues" / "default" / "1.0.0"))
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == SPLITS
    assert builder.info.citation.strip() == (FOLDER / "CITATIONS.bib").read_text().strip()


def test_examples_are_the_accepted_journal_records(built):
    from data_agents.records import DialogueRecord

    journal = {}
    for path in sorted((FOLDER / "dummy_data").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            r = DialogueRecord.from_json(json.loads(line))
            journal.setdefault(r.key, r)  # first occurrence wins, as in read_journals
    builder = tfds.builder_from_directory(str(built / "eigen_dialogues" / "default" / "1.0.0"))
    for split, n in SPLITS.items():
        source = builder.as_data_source(split=split)
        got = {(ex := source[i])["key"].decode(): ex for i in range(len(source))}
        want = {k: r for k, r in journal.items() if r.status == "accepted" and r.split == split}
        assert sorted(got) == sorted(want) and len(got) == n
        for key, r in want.items():
            expected = record_to_example(r)
            assert got[key]["task_json"].decode() == expected["task_json"]
            assert [m.decode() for m in got[key]["messages"]["content"]] == [
                m["content"] for m in expected["messages"]
            ]
