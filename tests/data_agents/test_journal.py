"""Journal durability: torn tails from a SIGKILLed writer are dropped, keys are never duplicated."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from data_agents.journal import Journal, iter_records, read_journals
from data_agents.records import DialogueRecord, RecordError


def make_record(i, status="accepted"):
    return DialogueRecord(
        key=f"s0/r0/{i}",
        status=status,
        domain="outfitter",
        task={"id": f"t{i}"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        policy="p",
        messages=[
            {"role": "user", "content": f"hello {i}"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c1", "name": "f", "arguments": {"x": i}}],
            },
            {"role": "tool", "content": "{}", "tool_call_id": "c1"},
            {"role": "assistant", "content": "done ✓"},
        ],
        verdict={"status": "pass", "reward": 1.0, "components": {}, "reason": None},
        failure=None if status == "accepted" else {"stage": "x", "reason": "y"},
    )


def test_append_resume_and_no_duplicates(tmp_path):
    p = tmp_path / "j.jsonl"
    with Journal(p) as j:
        assert j.append(make_record(0)) and j.append(make_record(1))
        assert not j.append(make_record(1))
    with Journal(p) as j:
        assert len(j) == 2 and "s0/r0/1" in j
        assert [r.key for r in j.records()] == ["s0/r0/0", "s0/r0/1"]
    assert [r.to_json() for r in iter_records(p)][0] == make_record(0).to_json()


def test_torn_tail_is_dropped(tmp_path):
    p = tmp_path / "j.jsonl"
    with Journal(p) as j:
        j.append(make_record(0))
    with open(p, "a") as f:
        f.write('{"key": "s0/r0/1", "status": "acc')  # a crash mid-write
    assert [r.key for r in iter_records(p)] == ["s0/r0/0"]
    with Journal(p) as j:
        assert j.keys() == {"s0/r0/0"}
        j.append(make_record(1))
    assert [r.key for r in iter_records(p)] == ["s0/r0/0", "s0/r0/1"]


def test_sigkill_mid_run_then_resume(tmp_path):
    p = tmp_path / "j.jsonl"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(os.getcwd())!r}); sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from test_journal import make_record
        from data_agents.journal import Journal
        j = Journal({str(p)!r})
        for i in range(100000):
            if f"s0/r0/{{i}}" in j: continue
            j.append(make_record(i))
            if i == 20: print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = [r.key for r in iter_records(p)]
    assert len(done) >= 21 and len(done) == len(set(done))
    with Journal(p) as j:  # resume: skip what is there, write the rest, no duplicates
        n0 = len(j)
        for i in range(n0 + 5):
            j.append(make_record(i))
    keys = [r.key for r in iter_records(p)]
    assert keys == [f"s0/r0/{i}" for i in range(n0 + 5)]


def test_merge_of_worker_journals(tmp_path):
    for w in range(2):
        with Journal(tmp_path / f"w{w}.jsonl") as j:
            for i in range(w, 6, 2):
                j.append(make_record(i))
            j.append(make_record(0))  # duplicate across workers is merged away
    keys = sorted(r.key for r in read_journals(list(tmp_path.glob("*.jsonl"))))
    assert keys == [f"s0/r0/{i}" for i in range(6)]


def test_bad_records_name_the_problem():
    with pytest.raises(RecordError, match=r"messages\[0\].role"):
        DialogueRecord(
            key="k",
            status="accepted",
            domain="d",
            task={},
            tools=[],
            policy="",
            messages=[{"role": "bot", "content": "x"}],
        )
    with pytest.raises(RecordError, match="failure reason"):
        make_record(0, status="rejected").__class__(
            key="k", status="rejected", domain="d", task={}, tools=[], policy="", messages=[]
        )
    with pytest.raises(RecordError, match="tool_call_id"):
        DialogueRecord(
            key="k",
            status="accepted",
            domain="d",
            task={},
            tools=[],
            policy="",
            messages=[{"role": "tool", "content": "x"}],
        )
