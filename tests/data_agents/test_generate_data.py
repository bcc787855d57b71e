"""launch/generate_data.py: offline reference pipeline to TFDS, fail-fast input errors, and the
LLM engine end to end against the real sglang-jax server (tiny random model)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_agents.journal import iter_records
from eigen_jax.data.dialogues import decode_example, dialogue_source

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "launch" / "generate_data.py")


def generate(*args, timeout=600):
    return subprocess.run(
        [sys.executable, SCRIPT, "--noprogress", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_reference_backend_publishes_200_dialogues_that_read_back_identically(tmp_path):
    out = tmp_path / "run"
    proc = generate(
        "--gin_file",
        "gin/data/outfitter_reference.gin",
        "--gin_bindings",
        "run_generation.reference_num_train=205",
        "--backend",
        "reference",
        "--domain",
        "outfitter",
        "--out",
        str(out),
        "--publish",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    journal = {r.key: r for r in iter_records(out / "journals" / "reference.jsonl")}
    accepted = {k: r for k, r in journal.items() if r.status == "accepted"}
    assert len(accepted) >= 200
    source = dialogue_source(str(out / "tfds"), "train")
    assert len(source) == len(accepted)
    for i in range(len(source)):
        got = decode_example(source[i])
        want = accepted[got["key"]]
        assert got["messages"] == want.messages and got["task"] == want.task
        assert got["tools"] == want.tools and got["policy"] == want.policy
        assert got["verdict"] == want.verdict and got["provenance"] == want.provenance
        assert got["checker_source"] == want.checker_source
    report = json.loads((out / "report.json").read_text())
    assert report["accepted"] == len(accepted) and (out / "acceptance.png").exists()
    again = generate(
        "--gin_file",
        "gin/data/outfitter_reference.gin",  # resume: nothing new
        "--gin_bindings",
        "run_generation.reference_num_train=205",
        "--backend",
        "reference",
        "--domain",
        "outfitter",
        "--out",
        str(out),
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(list(iter_records(out / "journals" / "reference.jsonl"))) == len(journal)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--domain", "atlantis", "--backend", "reference"], "unknown domain 'atlantis'"),
        (
            ["--domain", "outfitter", "--server_url", "http://127.0.0.1:9"],
            "cannot reach any LLM server",
        ),
        (["--domain", "outfitter"], "needs at least one --server_url"),
        (
            ["--domain", "outfitter", "--gin_bindings", "SynthesisConfig.nope=1"],
            "gin configuration error",
        ),
        (
            [
                "--domain",
                "outfitter",
                "--backend",
                "reference",
                "--gin_bindings",
                "run_generation.reference_num_train=-5",
            ],
            "reference_num_train",
        ),
        (
            ["--domain", "outfitter", "--gin_bindings", "run_generation.client_concurrency=0"],
            "client_concurrency",
        ),
        (
            ["--backend", "reference", "--gin_bindings", "SynthesisConfig.num_rounds=-1"],
            "SynthesisConfig.num_rounds must be >= 1, got -1",
        ),
        (["--server_url", "not-a-url"], "--server_url 'not-a-url' is not an http(s) URL"),
        (
            ["--backend", "reference", "--gin_bindings", "run_generation.reference_num_train=0"],
            "both 0: nothing to generate",
        ),
        (["--backend", "reference", "stray"], "unexpected arguments ['stray']"),
        (["--backend", "reference", "--publish", "--data_dir", __file__], "is not a directory"),
        (
            ["--backend", "reference", "--gin_bindings", "run_generation.reference_num_train=3"],
            "NotADirectoryError",
        ),  # --out under a file
    ],
)
def test_bad_input_fails_fast_with_one_line(tmp_path, args, message):
    if message == "NotADirectoryError":  # the output folder's parent is a file: found on write
        (tmp_path / "f").write_text("x")
        proc = generate("--out", str(tmp_path / "f" / "o"), *args, timeout=120)
    else:
        proc = generate("--out", str(tmp_path / "o"), *args, timeout=120)
    assert proc.returncode == 2  # fail()'s documented code
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("generate_data: ") and message in last


@pytest.mark.server
def test_llm_engine_against_real_server(tmp_path, sglang_server):  # noqa: F811
    out = tmp_path / "run"
    proc = generate(
        "--gin_file",
        "gin/data/smoke_tiny.gin",
        "--server_url",
        sglang_server.url,
        "--domain",
        "outfitter",
        "--out",
        str(out),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = list(iter_records(out / "journals" / "worker-000-of-001.jsonl"))
    assert len(records) == 2 * 2 * 1  # rounds x plans x tasks
    for r in records:  # random weights: everything is rejected, each with a reason
        assert r.status == "rejected" and r.failure["reason"] and r.failure["stage"]
        assert r.failure["attribution"] in ("task", "trajectory")
    reflection = json.loads((out / "rounds" / "r000" / "reflection.json").read_text())
    assert reflection["next_version"] == "v1"
    assert (out / "prompts" / "v1" / "guidance.json").exists()
    assert json.loads((out / "report.json").read_text())["total"] == 4


REFERENCE = (
    "--gin_file",
    "gin/data/outfitter_reference.gin",
    "--backend",
    "reference",
    "--domain",
    "outfitter",
)


def test_second_run_on_the_same_out_is_refused_while_the_first_holds_it(tmp_path):
    from tests.data_agents.test_run_dir import _holder

    out = tmp_path / "run"
    holder = _holder(out, "reference")  # what a running reference generation holds
    try:
        proc = generate(
            *REFERENCE,
            "--gin_bindings",
            "run_generation.reference_num_train=3",
            "--out",
            str(out),
            timeout=300,
        )
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("generate_data: ") and "is in use" in last and str(holder.pid) in last
    assert not (out / "journals").exists()  # nothing was written


def test_resume_with_another_configuration_is_refused_naming_the_keys(tmp_path):
    out = tmp_path / "run"
    first = generate(
        *REFERENCE,
        "--gin_bindings",
        "run_generation.reference_num_train=3",
        "--out",
        str(out),
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    journal = (out / "journals" / "reference.jsonl").read_bytes()
    proc = generate(
        *REFERENCE,
        "--gin_bindings",
        "run_generation.reference_num_train=4",
        "--out",
        str(out),
        timeout=300,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("generate_data: ") and "run_generation.reference_num_train: 3 -> 4" in last
    )
    assert (out / "journals" / "reference.jsonl").read_bytes() == journal


def test_publish_rebuilds_a_new_version_whenever_the_journals_changed(tmp_path):
    out = tmp_path / "run"
    args = (
        *REFERENCE,
        "--gin_bindings",
        "run_generation.reference_num_train=3",
        "--out",
        str(out),
        "--publish",
    )

    def published():
        proc = generate(*args, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    published()
    published()  # journals unchanged: still one version
    versions = sorted(p.name for p in (out / "tfds" / "eigen_dialogues" / "default").iterdir())
    assert versions == ["1.0.0"]
    journal = list(iter_records(out / "journals" / "reference.jsonl"))
    extra = type(journal[0]).from_json(
        {**journal[0].to_json(), "key": "late/worker/record", "status": "accepted"}
    )
    with (out / "journals" / "late.jsonl").open("w") as f:  # e.g. a late worker's journal
        f.write(json.dumps(extra.to_json()) + "\n")
    published()
    versions = sorted(p.name for p in (out / "tfds" / "eigen_dialogues" / "default").iterdir())
    assert versions == ["1.0.0", "1.0.1"]
    keys = sorted(decode_example(ex)["key"] for ex in dialogue_source(str(out / "tfds"), "train"))
    assert keys == sorted([r.key for r in journal if r.status == "accepted"] + [extra.key])
