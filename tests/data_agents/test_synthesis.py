"""The engine end to end with a scripted LLM: journal, rounds, reflection, rollback, sharding,
and resumption after SIGKILL."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_agents.domains import load
from data_agents.journal import iter_records, read_journals
from data_agents.synthesis import SynthesisConfig, SynthesisEngine, instance_key
from tests.data_agents.agents.fake_llm import FakeLLM, completion

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def domain():
    return load("outfitter", n_train=0, n_test=0)


def records(out):
    return list(read_journals(sorted((Path(out) / "journals").glob("*.jsonl"))))


def test_run_journals_everything_and_reports(domain, tmp_path):
    reject_half = {
        "task_verify": lambda m, t, g: completion(
            '{"policy_consistent": true, "solvable": true}' if "/s0000/" in g else "not json"
        )
    }
    cfg = SynthesisConfig(num_rounds=2, plans_per_round=2, tasks_per_plan=2, poll_s=0.01)
    report = asyncio.run(SynthesisEngine(FakeLLM(reject_half), domain, tmp_path, cfg).run())
    recs = records(tmp_path)
    assert sorted(r.key for r in recs) == sorted(
        instance_key(r, s, t) for r in range(2) for s in range(2) for t in range(2)
    )
    for r in recs:
        if r.provenance["stream"] == 0:
            assert r.status == "accepted" and r.verdict["status"] == "pass"
            assert r.messages[0]["role"] == "system" and r.task["id"]
        else:
            assert r.status == "rejected" and r.failure["stage"] == "task_verify"
            assert r.failure["category"] == "invalid_json" and r.failure["attribution"] == "task"
    rounds = report["rounds"]
    assert [x["acceptance_rate"] for x in rounds] == [0.5, 0.5]
    assert rounds[0]["failures_by_category"] == {"task_verify/invalid_json": 2}
    assert rounds[0]["tokens"]["requests"] > 0
    assert [x["prompt_version"] for x in rounds] == ["v0", "v1"]
    assert (tmp_path / "acceptance.png").read_bytes()[:4] == b"\x89PNG"
    v1 = json.loads((tmp_path / "prompts" / "v1" / "guidance.json").read_text())
    assert "task_verify/invalid_json (task): 2x" in v1["task_synth"]
    # the round-1 prompts really carried the new guidance
    assert [r.provenance["prompt_version"] for r in recs if r.provenance["round"] == 1] == [
        "v1"
    ] * 4


def test_round_below_best_is_rolled_back(domain, tmp_path):
    fail_round1 = {
        "task_verify": lambda m, t, g: completion(
            "nope" if g.startswith("r001") else '{"policy_consistent": true, "solvable": true}'
        )
    }
    cfg = SynthesisConfig(num_rounds=3, plans_per_round=1, tasks_per_plan=2, poll_s=0.01)
    report = asyncio.run(SynthesisEngine(FakeLLM(fail_round1), domain, tmp_path, cfg).run())
    rates = [r["acceptance_rate"] for r in report["rounds"]]
    assert rates == [1.0, 0.0, 1.0]
    refl1 = json.loads((tmp_path / "rounds" / "r001" / "reflection.json").read_text())
    assert refl1["rolled_back"] and refl1["parent"] == "v0"  # round 0's version, not v1
    assert report["rounds"][2]["prompt_version"] == refl1["next_version"] == "v2"
    meta = json.loads((tmp_path / "prompts" / "v2" / "meta.json").read_text())
    assert meta["parent"] == "v0"


def test_two_workers_shard_streams_and_share_rounds(domain, tmp_path):
    cfg = SynthesisConfig(num_rounds=2, plans_per_round=3, tasks_per_plan=1, poll_s=0.01)

    async def both():
        return await asyncio.gather(
            *(
                SynthesisEngine(
                    FakeLLM(), domain, tmp_path, cfg, worker_index=i, num_workers=2
                ).run()
                for i in (0, 1)
            )
        )

    lead, other = asyncio.run(both())
    per_worker = {
        p.name: [r.provenance["stream"] for r in iter_records(p)]
        for p in (tmp_path / "journals").glob("*.jsonl")
    }
    assert sorted(per_worker["worker-000-of-002.jsonl"]) == [0, 0, 2, 2]
    assert sorted(per_worker["worker-001-of-002.jsonl"]) == [1, 1]
    assert lead["total"] == 6 and other["worker_counts"]["accepted"] == 2
    # both workers used the same round-1 plans and prompt version
    assert {
        r.provenance["prompt_version"] for r in records(tmp_path) if r.provenance["round"] == 1
    } == {"v1"}


def test_engine_propagates_server_loss(domain, tmp_path):
    from data_agents.llm.errors import LLMUnavailableError

    def down(m, t, g):
        raise LLMUnavailableError("http://x/v1/chat/completions", 5, "connection refused")

    cfg = SynthesisConfig(num_rounds=1, plans_per_round=2, tasks_per_plan=1, poll_s=0.01)
    with pytest.raises(ExceptionGroup) as e:
        asyncio.run(SynthesisEngine(FakeLLM({"task_synth": down}), domain, tmp_path, cfg).run())
    assert e.group_contains(LLMUnavailableError)
    assert records(tmp_path) == []  # nothing half-written


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tmp_path):
    journal = tmp_path / "journals" / "worker-000-of-001.jsonl"
    # 50 ms a call (~8 s a run): wide enough that a loaded machine still kills it mid-run.
    cmd = [sys.executable, "-m", "tests.data_agents.agents.fake_llm", str(tmp_path), "0.05"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= 5:
            break
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [
        json.loads(line)["key"]
        for line in journal.read_text().splitlines()
        if line.strip().endswith("}")
    ]
    assert 5 <= len(before) < 24, "the kill must land mid-run"
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    keys = [d["key"] for d in lines]
    assert len(keys) == len(set(keys)) == 24  # 2 rounds x 4 plans x 3 tasks
    assert keys[: len(before)] == before  # nothing journaled before the kill was rewritten
    assert counts["skipped"] >= len(before) and counts["accepted"] == 24 - counts["skipped"]
    assert all(d["status"] == "accepted" for d in lines)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["total"] == 24 and [r["total"] for r in report["rounds"]] == [12, 12]


def test_hostile_llm_output_is_a_failed_instance_and_resume_does_not_crash(domain, tmp_path):
    """Output nested 200k deep (RecursionError bait) or 2 MB long from the task verifier: each
    is that instance's stage failure, the run completes, and a resume over the same output (as
    a response cache would replay it) completes too without duplicating a record."""
    nested = "```json\n" + "[" * 200_000 + "]" * 200_000 + "\n```"
    huge = '{"policy_consistent": true, "solvable": true, "x": "' + "y" * 2_000_000 + '"}'
    hostile = {
        "task_verify": lambda m, t, g: completion(
            nested
            if "/s0000/" in g
            else huge
            if "/s0001/" in g
            else '{"policy_consistent": true, "solvable": true}'
        )
    }
    cfg = SynthesisConfig(num_rounds=1, plans_per_round=3, tasks_per_plan=1, poll_s=0.01)
    for _ in range(2):  # the first run, then the resume
        asyncio.run(SynthesisEngine(FakeLLM(hostile), domain, tmp_path, cfg).run())
        recs = records(tmp_path)
        assert len(recs) == 3 and len({r.key for r in recs}) == 3
        by_stream = {r.provenance["stream"]: r for r in recs}
        for stream in (0, 1):
            assert by_stream[stream].status == "rejected"
            assert by_stream[stream].failure["stage"] == "task_verify"
        assert by_stream[2].status == "accepted"
