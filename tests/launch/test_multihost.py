"""Multi-process runs against a single-process reference (issue #24).

Every process here is a separate `python` on 127.0.0.1 with 4 fake CPU devices and gloo
collectives, started with `--coordinator_address/--num_processes/--process_id`
(`tests/fixtures/multiprocess.py`). The reference is the same program in one process with 8
devices: the same mesh shape, so the same global computation.
"""

import json
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import multiprocess as mp

GIN = "gin/test/sft_tiny.gin"
AGENT_SFT = [
    "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, @agent/sft_stage]",
    "run_sft.batch_size=8",
    "run_sft.eval_every=100",
    "run_sft.checkpoint_every=100",
]

COLLECTIVES = r"""
import argparse, json, sys
ap = argparse.ArgumentParser()
ap.add_argument("out"); ap.add_argument("--coordinator_address")
ap.add_argument("--num_processes", type=int); ap.add_argument("--process_id", type=int)
a = ap.parse_args()
from eigen_jax import multihost, sharding
import jax, numpy as np
assert sharding.initialize_distributed(a.coordinator_address, a.num_processes, a.process_id)
me = jax.process_index()
mesh = sharding.make_mesh((2, 4, 1))
full = np.arange(8 * 6, dtype=np.float32).reshape(8, 6) ** 1.5
batch = multihost.global_batch_from_host({"x": full}, lambda v: sharding.batch_sharding(mesh, 2))
rows = sorted({i[0].start or 0 for d, i in batch["x"].sharding.devices_indices_map(
    full.shape).items() if d.process_index == me})
written = multihost.primary_first("write", lambda: {"by": me})
try:
    multihost.primary_first("fail", lambda: 1 / 0)
    failure = None
except Exception as e:
    failure = type(e).__name__
out = {"process": me, "count": jax.process_count(), "devices": jax.device_count(),
       "local_devices": jax.local_device_count(),
       "sum": float(jax.jit(lambda x: (x * x).sum())(batch["x"])),
       "expected": float((full * full).sum()),
       "rows": [int(r) for r in rows], "gathered": multihost.allgather_json({"p": me}),
       "written": written, "failure": failure,
       "any_term": multihost.any_process(me == 1), "no_term": multihost.any_process(False),
       "split": multihost.split_evenly(list(range(7)))}
json.dump(out, open(f"{a.out}.{me}.json", "w"))
multihost.barrier("end")
"""


def test_two_processes_initialize_from_flags_and_agree(tmp_path):
    """The flags alone make a 2-process program: 8 global devices, each process's rows of a
    global batch on its own devices, the same reduced value as numpy, process 0's result (and
    its failure) on both, a flag raised on one process seen by both."""
    procs = mp.Processes(["-c", COLLECTIVES, str(tmp_path / "out")], 2, 4, tmp_path / "logs")
    assert procs.wait(timeout=300) == [0, 0], procs.log(0)[-3000:] + procs.log(1)[-3000:]
    outs = [json.loads((tmp_path / f"out.{i}.json").read_text()) for i in range(2)]
    for i, o in enumerate(outs):
        assert (o["process"], o["count"], o["devices"], o["local_devices"]) == (i, 2, 8, 4)
        assert o["sum"] == pytest.approx(o["expected"], rel=1e-6)
        assert o["gathered"] == [{"p": 0}, {"p": 1}]
        assert o["written"] == {"by": 0}
        assert o["failure"] in ("ZeroDivisionError", "RuntimeError")
        assert o["any_term"] is True and o["no_term"] is False
    assert outs[0]["failure"] == "ZeroDivisionError" and outs[1]["failure"] == "RuntimeError"
    assert sorted(outs[0]["rows"] + outs[1]["rows"]) == list(range(8))  # disjoint, covering
    assert outs[0]["split"] == [0, 2, 4, 6] and outs[1]["split"] == [1, 3, 5]


def test_partial_flags_are_refused(monkeypatch):
    from eigen_jax import multihost

    for var in multihost.AUTO_DETECT_ENV:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="process_id"):
        multihost.initialize("127.0.0.1:1234", 2)
    with pytest.raises(ValueError, match=r"not in \[0, 2\)"):
        multihost.initialize("127.0.0.1:1234", 2, 2)
    assert multihost.initialize(num_processes=1) is False
    assert multihost.initialize() is False


# ------------------------------------------------------------------------- agent SFT, end to end
def losses(workdir) -> dict[int, float]:
    by_step = {}
    for line in (Path(workdir) / "sft_agent" / "tb" / "metrics.jsonl").read_text().splitlines():
        d = json.loads(line)
        if "loss" in d:
            by_step[d["step"]] = d["loss"]  # a resumed run overwrites the killed run's steps
    return by_step


def hf_params(workdir) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(workdir) / "sft_agent" / "hf" / "model.safetensors"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Data and tokenizer (one process), copied into each run's workdir."""
    wd = tmp_path_factory.mktemp("mh") / "prepared"
    mp.run_train(wd, GIN, ["run_pipeline.stages=[@reference_data_stage, @tokenizer_stage]"], 1, 1)
    return wd


@pytest.fixture(scope="module")
def reference(prepared):
    """1 process x 8 devices, 8 steps: the trace every multi-process run must reproduce."""
    wd = prepared.parent / "one_process"
    shutil.copytree(prepared, wd)
    mp.run_train(wd, GIN, AGENT_SFT + ["run_sft.num_steps=8"], 1, 8)
    return wd


@pytest.mark.slow  # ~3 min: a 1-process and a 2-process training run
def test_two_process_agent_sft_matches_one_process(prepared, reference):
    wd = prepared.parent / "two_processes"
    shutil.copytree(prepared, wd)
    mp.run_train(wd, GIN, AGENT_SFT + ["run_sft.num_steps=8"], 2, 4)
    got, want = losses(wd), losses(reference)
    assert sorted(got) == sorted(want) == list(range(1, 9))
    diffs = [abs(got[s] - want[s]) for s in want]
    print("max |loss difference| over 8 steps:", max(diffs))
    assert max(diffs) <= 1e-5, diffs
    a, b = hf_params(wd), hf_params(reference)
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)
    print("max |final parameter difference|:", worst)
    assert worst <= 1e-6
    # one writer: one metrics file line per step, process 0's result, no second event file
    assert len(list((wd / "sft_agent" / "tb").glob("events.*"))) == 1
    assert json.loads((wd / "sft_agent" / "result.json").read_text())["steps"] == 8


@pytest.mark.slow  # ~4 min: 2-process run killed, then resumed
def test_sigkill_both_and_resume_continue_the_trace(prepared, reference):
    wd = prepared.parent / "killed"
    shutil.copytree(prepared, wd)
    args = AGENT_SFT + ["run_sft.num_steps=8", "run_sft.checkpoint_every=3"]
    procs = mp.run_train(wd, GIN, args, 2, 4, wait=False)
    metrics = wd / "sft_agent" / "tb" / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and not (metrics.exists() and len(losses(wd)) >= 5):
        assert all(p.poll() is None for p in procs.procs), procs.log(0)[-3000:]
        time.sleep(0.2)
    procs.kill_all()  # SIGKILL
    killed_at = max(losses(wd))
    assert 5 <= killed_at < 8
    mp.run_train(wd, GIN, args, 2, 4)
    assert "resumed" in (wd.parent / "killed_logs" / "process_1.log").read_text()
    got, want = losses(wd), losses(reference)
    assert sorted(got) == list(range(1, 9))
    assert max(abs(got[s] - want[s]) for s in want) <= 1e-5


@pytest.mark.slow  # ~2 min
def test_sigterm_to_one_process_saves_the_same_step_on_both(prepared):
    wd = prepared.parent / "sigterm"
    shutil.copytree(prepared, wd)
    args = AGENT_SFT + ["run_sft.num_steps=1000"]
    procs = mp.run_train(wd, GIN, args, 2, 4, wait=False)
    metrics = wd / "sft_agent" / "tb" / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and not (metrics.exists() and len(losses(wd)) >= 2):
        assert all(p.poll() is None for p in procs.procs), procs.log(0)[-3000:]
        time.sleep(0.2)
    procs.signal(1, signal.SIGTERM)
    assert procs.wait(timeout=300) == [0, 0], procs.log(0)[-3000:]
    saved = [int(p.name) for p in (wd / "sft_agent" / "checkpoints").iterdir() if p.name.isdigit()]
    assert len(saved) == 1 and 2 <= saved[0] < 1000
    for i in range(2):
        assert f"SIGTERM: saved step {saved[0]}, exiting" in procs.log(i)
    assert max(losses(wd)) == saved[0]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
