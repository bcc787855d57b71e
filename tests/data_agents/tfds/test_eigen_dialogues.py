"""Publishing journals as TFDS array_record shards and reading them back with identical content."""

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


def test_republish_builds_a_new_version_only_when_the_journals_changed(tmp_path):
    """Versions and contents against the journals themselves; readers without a version get the
    newest (the builder's code is imported here, which would otherwise pin the first one)."""
    from eigen_jax.data.dialogues import dialogue_source

    jdir, data = tmp_path / "journals", tmp_path / "data"
    with Journal(jdir / "w.jsonl") as j:
        for i in range(3):
            j.append(make_record(i))
    first = build_dataset(jdir, data)
    assert str(first.version) == "1.0.0" and first.info.splits["train"].num_examples == 3
    again = build_dataset(jdir, data)  # nothing changed: the same version, not rebuilt
    assert str(again.version) == "1.0.0"
    with Journal(jdir / "w.jsonl") as j:  # a resumed run adds records
        for i in range(3, 5):
            j.append(make_record(i))
    (jdir / "w.jsonl").open("a").write('{"torn')  # a crashed writer's tail is not a change
    second = build_dataset(jdir, data)
    assert str(second.version) == "1.0.1" and second.info.splits["train"].num_examples == 5
    newest = dialogue_source(str(data), "train")
    assert sorted(example_to_dialogue(ex)["key"] for ex in newest) == sorted(
        make_record(i).key for i in range(5)
    )
    old = dialogue_source(str(data), "train", "eigen_dialogues/default:1.0.0")
    assert len(old) == 3  # the earlier version stays readable
    assert str(build_dataset(jdir, data).version) == "1.0.1"
