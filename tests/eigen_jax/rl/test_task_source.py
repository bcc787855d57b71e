"""Task sources: a domain's split, or the synthesised tasks (with their checkers, code ones run
sandboxed) of a published TFDS dataset, against the journal the dataset was built from."""

from __future__ import annotations

import json

import pytest

from data_agents.checkers import SandboxLimits, check
from data_agents.domains import load
from eigen_jax.rl.task_source import TaskSource

NEVER = "def check(initial_db, final_db, transcript):\n    return False\n"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """An outfitter dataset from the reference backend; one task gets a code checker that always
    fails, as the engine's task synthesis would attach one."""
    from data_agents.reference_backend import generate_reference
    from data_agents.tfds import build_dataset

    root = tmp_path_factory.mktemp("published")
    journal = root / "journals" / "j.jsonl"
    generate_reference("outfitter", journal, {"train": 6, "test": 2}, n_train=6, n_test=2)
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    coded = next(r for r in records if r["split"] == "train" and r["status"] == "accepted")
    coded["checker_source"] = NEVER
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    build_dataset(root / "journals", root / "tfds")
    return str(root / "tfds"), records, coded["task"]["id"]


def test_synthesised_tasks_are_the_datasets_with_their_checkers(published):
    data_dir, records, coded_id = published
    domain = load("outfitter", n_train=6, n_test=2)
    source = TaskSource("synthesised", data_dir)
    tasks = source.tasks(domain, "train")
    expected = {
        r["task"]["id"] for r in records if r["split"] == "train" and r["status"] == "accepted"
    }
    assert sorted(t.id for t in tasks) == sorted(expected)  # each once (TFDS shuffles)
    by_id = {t.id: t for t in tasks}
    assert by_id[coded_id].checker_source == NEVER
    assert all(t.checker_source is None for t in tasks if t.id != coded_id)
    # the code checker reaches the verdict: the reference dialogue passes declaratively, fails
    record = next(r for r in records if r["task"]["id"] == coded_id)
    env = domain.make_env(by_id[coded_id])
    for m in record["messages"]:
        for c in m.get("tool_calls") or []:
            env.call(c["name"], c["arguments"], m["role"])
    verdict = check(
        domain, by_id[coded_id], env, record["messages"], limits=SandboxLimits(cpu_s=5, wall_s=20.0)
    )
    assert verdict.status == "fail" and verdict.components["CODE"] == 0.0
    assert TaskSource("synthesised", data_dir, max_tasks=2).tasks(domain, "train") == tasks[:2]
    assert [t.id for t in TaskSource().tasks(domain, "test")] == [
        t.id for t in domain.tasks("test")
    ]


def test_bad_sources_name_the_problem(published):
    data_dir, _, _ = published
    with pytest.raises(ValueError, match="needs data_dir"):
        TaskSource("synthesised")
    with pytest.raises(ValueError, match="kind must be one of"):
        TaskSource("tfds")
    with pytest.raises(ValueError, match="no 'train' tasks for domain 'airline'"):
        TaskSource("synthesised", data_dir).tasks(load("tau2:airline"), "train")
