"""Bring your own domain: a domain defined outside the package (tests/fixtures/library_domain.py)
is found by its `module:factory` spec, by `register` and by an installed entry point, and runs
through the offline synthesis (reference solver → journal → TFDS), agent SFT and a GRPO step with
its own scripted user, with no edit to the `BUILTIN` table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_agents import domains

REPO = Path(__file__).resolve().parents[2]
SPEC = "tests.fixtures.library_domain:make_domain"


def test_spec_register_and_entry_point_load_the_same_domain(tmp_path, monkeypatch):
    from tests.fixtures import library_domain

    assert domains.load(SPEC, n_test=3).tasks("test")[2].id == "library_test_002"
    monkeypatch.setattr(domains, "_REGISTERED", {})
    domains.register("library_registered", library_domain.make_domain)
    assert "library_registered" in domains.names()
    assert isinstance(domains.load("library_registered"), library_domain.LibraryDomain)

    # an installed distribution's entry point (a dist-info folder on sys.path is one)
    info = tmp_path / "library_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: library-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{domains.ENTRY_POINT_GROUP}]\nlibrary_ep = {SPEC}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "library_ep" in domains.names()
    assert domains.load("library_ep", n_train=5).tasks("train")[-1].id == "library_train_012"


@pytest.mark.parametrize(
    "name,message",
    [
        ("nowhere.module:make_domain", "cannot import module 'nowhere.module'"),
        ("tests.fixtures.library_domain:no_factory", "has no 'no_factory'"),
        ("library", "unknown domain 'library'"),
    ],
)
def test_bad_domain_names_say_what_is_wrong(name, message):
    with pytest.raises(ValueError, match=message):
        domains.load(name)


def test_a_factory_must_return_a_domain():
    with pytest.raises(TypeError, match="returned str, not a data_agents.domains.Domain"):
        domains.load("json:dumps", obj=1)


def test_builtin_names_cannot_be_registered():
    with pytest.raises(ValueError, match="reserved"):
        domains.register("outfitter", lambda: None)


def test_reference_synthesis_on_the_own_domain(tmp_path):
    """The offline data stage on the spec: every dialogue passes the domain's checker and the
    published dataset holds them."""
    from eigen_jax.data.dialogues import decode_example, dialogue_source
    from launch.pipeline import RunContext, reference_data_stage

    ctx = RunContext(str(tmp_path))
    reference_data_stage(
        ctx, domain=SPEC, num_train=6, num_test=2, domain_kwargs={"n_train": 6, "n_test": 2}
    )
    assert ctx.dataset_splits == {"train": 6, "test": 2} and ctx.domain == SPEC
    source = dialogue_source(ctx.data_dir, "train")
    rows = [decode_example(source[i]) for i in range(len(source))]
    assert {r["domain"] for r in rows} == {SPEC}
    assert all(r["verdict"]["status"] == "pass" and r["reward"] == 1.0 for r in rows)
    assert {c["name"] for r in rows for m in r["messages"] for c in m.get("tool_calls", [])} == {
        "find_book",
        "borrow_book",
    }


def test_a_domain_without_a_reference_solver_is_refused(tmp_path, monkeypatch):
    from data_agents.reference_backend import generate_reference
    from tests.fixtures.library_domain import LibraryDomain

    class NoSolver(LibraryDomain):
        reference_dialogue = domains.Domain.reference_dialogue

    monkeypatch.setattr(domains, "_REGISTERED", {})
    domains.register("library_no_solver", NoSolver)
    with pytest.raises(ValueError, match="has no reference solver"):
        generate_reference("library_no_solver", tmp_path / "j.jsonl", {"test": 1})


@pytest.mark.slow  # agent SFT + one GRPO step, both compiled (~2-3 min here); `make test-slow`
def test_sft_and_a_grpo_step_on_the_own_domain(tmp_path):
    bindings = [
        "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, @agent/sft_stage, "
        "@grpo_stage]",
        f"reference_data_stage.domain='{SPEC}'",
        "reference_data_stage.num_train=24",
        "reference_data_stage.num_test=8",
        "reference_data_stage.domain_kwargs={'n_train': 24, 'n_test': 8}",
        "run_sft.num_steps=6",
        "run_sft.eval_every=100",
        "run_sft.checkpoint_every=100",
        "grpo_stage.user='reference'",
        "run_grpo.num_steps=1",
        "GRPOConfig.tasks_per_step=2",
        "GRPOConfig.group_size=2",
        "GRPOConfig.max_extra_rounds=0",
        "GRPOConfig.dynamic_filtering=False",
        "RolloutConfig.max_new_tokens=32",
        "RolloutConfig.max_steps=4",
        "SamplerConfig.max_len=1024",
        "SamplerConfig.num_slots=4",
        "run_grpo.save_episodes=True",
    ]
    cmd = [
        sys.executable,
        str(REPO / "launch" / "train.py"),
        "--gin_file",
        "gin/test/sft_tiny.gin",
        "--workdir",
        str(tmp_path),
    ] + [f"--gin_bindings={b}" for b in bindings]
    from tests.fixtures.multiprocess import cpu_env

    out = subprocess.run(
        cmd, cwd=REPO, env=cpu_env(1), capture_output=True, text=True, timeout=1200
    )
    assert out.returncode == 0, out.stderr[-4000:]
    sft = json.loads((tmp_path / "sft_agent" / "result.json").read_text())
    grpo = json.loads((tmp_path / "grpo" / "result.json").read_text())
    assert sft["steps"] == 6 and grpo["learner_updates"] == 1, grpo
    assert (tmp_path / "grpo" / "hf" / "model.safetensors").is_file()
    import pickle

    groups = [
        g
        for f in sorted((tmp_path / "grpo" / "episodes").glob("*.pkl"))
        for g in pickle.loads(f.read_bytes())
    ]
    task_ids = {e.task_id for g in groups for e in g}
    assert task_ids and all(t.startswith("library_train_") for t in task_ids), task_ids
    pipeline = json.loads((tmp_path / "pipeline.json").read_text())
    assert pipeline["domain"] == SPEC
