"""Output-folder guards: a real second process holding the lock, configurations that differ."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from data_agents import run_dir

HOLDER = textwrap.dedent("""
    import sys, time
    from data_agents import run_dir
    run_dir.hold_lock(sys.argv[1], sys.argv[2])
    print("held", flush=True)
    time.sleep(60)
""")


def _holder(out, role):
    """Another process that takes the lock and keeps it until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out), role],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_until_the_first_dies(tmp_path):
    proc = _holder(tmp_path, "worker-000-of-001")
    try:
        with pytest.raises(run_dir.OutputInUse, match=f"pid {proc.pid}"):
            run_dir.hold_lock(tmp_path, "worker-000-of-001")
        other = run_dir.hold_lock(tmp_path, "worker-001-of-002")  # another role: allowed
        run_dir.release_lock(other)
    finally:
        proc.kill()
        proc.wait()
    path = run_dir.hold_lock(tmp_path, "worker-000-of-001")  # SIGKILL left no stale lock
    assert path.read_text().strip() == str(os.getpid())
    run_dir.release_lock(path)


def test_config_is_recorded_once_and_a_different_one_is_refused_by_key(tmp_path):
    config = {"--domain": "outfitter", "SynthesisConfig.num_rounds": 2, "kw": {"a": [1, 2]}}
    fp = run_dir.record_config(tmp_path, config)
    assert run_dir.record_config(tmp_path, dict(config)) == fp  # the same run resumes
    recorded = json.loads((tmp_path / "journals" / "config.json").read_text())
    assert recorded == {"fingerprint": fp, "config": config}
    changed = {**config, "SynthesisConfig.num_rounds": 3, "--model": "m"}
    with pytest.raises(run_dir.ConfigMismatch) as e:
        run_dir.record_config(tmp_path, changed)
    message = str(e.value)
    assert (
        "SynthesisConfig.num_rounds: 2 -> 3" in message and "--model: '<unset>' -> 'm'" in message
    )
    assert "--domain" not in message and "\n" not in message
    assert json.loads((tmp_path / "journals" / "config.json").read_text()) == recorded
