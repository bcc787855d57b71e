"""Publishing journals as TFDS array_record shards and reading them back with identical content."""
import json

import tensorflow_datasets as tfds

from data_agents.journal import Journal
from data_agents.tfds import build_dataset
from eigen_jax.data.dialogues import decode_example as example_to_dialogue
from tests.data_agents.test_journal import make_record


def test_publish_and_read_back_identical(tmp_path):
    jdir = tmp_path / "journals"
    records = {}
    for w in range(2):
        with Journal(jdir / f"worker{w}.jsonl") as j:
            for i in range(w, 10, 2):
                r = make_record(i)
                r.provenance = {"round": i % 3, "stream": f"plan{w}", "prompt_version": "v1"}
                if i == 9:
                    r.split = "test"
                j.append(r)
                records[r.key] = r
            j.append(make_record(100, status="rejected"))  # never published
    builder = build_dataset(jdir, tmp_path / "data")
    assert set(builder.info.splits) == {"train", "test"}
    assert builder.info.splits["train"].num_examples == 9
    src = builder.as_data_source()
    seen = {}
    for split in ("train", "test"):
        for ex in src[split]:
            d = example_to_dialogue(ex)
            seen[d["key"]] = d
    assert set(seen) == set(records)
    for key, r in records.items():
        d = seen[key]
        assert d["messages"] == r.messages
        assert d["task"] == r.task and d["tools"] == r.tools and d["verdict"] == r.verdict
        assert d["provenance"] == r.provenance and d["round"] == r.provenance["round"]
    # the generic TFDS reader finds it by name too
    ds = tfds.data_source("eigen_dialogues", data_dir=str(tmp_path / "data"))
    assert len(ds["train"]) == 9
