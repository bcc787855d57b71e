"""A run folder on a non-local `epath` scheme: `--workdir gs://bucket/run` against an in-memory
GCS emulator (tests/fixtures/gcs_emulator.py), through the clients a real bucket uses (gcsfs for
files, tensorstore's GCS driver for orbax's arrays).

The end-to-end test trains agent SFT with its run folder in the bucket, stops at a checkpoint,
resumes from it, exports HF safetensors there, and compares that export with an uninterrupted
local run's, tensor by tensor (equal bits: same CPU device, same data order, resumed iterator).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gcp_storage_emulator")
pytest.importorskip("gcsfs")

from tests.fixtures.gcs_emulator import gcs_emulator, gcs_env, in_process  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TRAIN = [sys.executable, str(REPO / "launch" / "train.py"), "--gin_file", "gin/test/sft_tiny.gin"]
AGENT_ONLY = [
    "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, @agent/sft_stage]",
    "run_sft.checkpoint_every=2",
    "run_sft.eval_every=100",
]


@pytest.fixture(scope="module")
def emulator():
    with gcs_emulator() as url:
        yield url


@pytest.fixture
def gcs(emulator):
    with in_process(emulator):
        yield emulator


def test_staging_pull_and_local_copy_round_trip(gcs, tmp_path):
    from eigen_jax import paths

    dst = "gs://bucket/staging/out"
    with paths.local_staging(dst, "t") as local:
        assert not local.startswith("gs:")
        Path(local, "sub").mkdir()
        Path(local, "sub", "a.bin").write_bytes(bytes(range(256)) * 3)
        Path(local, "b.txt").write_text("first\n")
    assert not os.path.exists("gs:"), "a URL must never become a local folder named gs:"
    with paths.local_staging(dst, "t", pull=True) as local:  # a resumed writer sees its output
        assert Path(local, "b.txt").read_text() == "first\n"
        Path(local, "b.txt").write_text("first\nsecond\n")
    copy = Path(paths.local_dir(dst))
    assert (copy / "sub" / "a.bin").read_bytes() == bytes(range(256)) * 3
    assert (copy / "b.txt").read_text() == "first\nsecond\n"


def test_metrics_jsonl_keeps_earlier_steps_when_reopened(gcs):
    """An object store has no append: a resumed run's writer must not drop the earlier steps."""
    from eigen_jax import paths
    from eigen_jax.train.metrics import MetricsWriter

    logdir = "gs://bucket/metrics/tb"
    for step in (1, 2):
        w = MetricsWriter(logdir, console_every=0, write=True)
        w.write(step, {"loss": float(step)})
        w.close()
    lines = (paths.resolve(logdir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    assert any(p.name.startswith("events.out.tfevents") for p in paths.resolve(logdir).iterdir())


def test_orbax_checkpoint_round_trip(gcs):
    import jax.numpy as jnp

    from eigen_jax import paths
    from eigen_jax.train.checkpoint import Checkpointer

    state = {"w": jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(5, jnp.bfloat16)}
    ckpt = Checkpointer("gs://bucket/ckpt", save_interval_steps=1)
    ckpt.save(3, state, {"iterator": [1, 2]})
    ckpt.close()
    assert (paths.resolve("gs://bucket/ckpt") / "3").is_dir()
    again = Checkpointer("gs://bucket/ckpt")
    restored, data = again.restore(state)
    again.close()
    assert again.latest_step() == 3 and data == {"iterator": [1, 2]}
    for k in state:
        np.testing.assert_array_equal(np.asarray(restored[k]), np.asarray(state[k]))


def test_data_stage_resumes_and_reads_back_from_a_bucket(gcs, tmp_path):
    """The data stage (journal + TFDS: local-only writers) staged through the bucket: a second
    run skips every journaled task, and the dataset read from the bucket equals a local build."""
    from eigen_jax.data.dialogues import decode_example, dialogue_source
    from launch.pipeline import RunContext, reference_data_stage

    kw = dict(
        domain="outfitter", num_train=4, num_test=2, domain_kwargs={"n_train": 4, "n_test": 2}
    )
    remote, again = RunContext("gs://bucket/data_run"), RunContext("gs://bucket/data_run")
    reference_data_stage(remote, **kw)
    assert remote.data_dir == "gs://bucket/data_run/data/tfds"
    reference_data_stage(again, **kw)
    assert again.dataset_splits == remote.dataset_splits == {"train": 4, "test": 2}
    local = RunContext(str(tmp_path))
    reference_data_stage(local, **kw)
    for split in ("train", "test"):
        a, b = dialogue_source(remote.data_dir, split), dialogue_source(local.data_dir, split)
        rows = lambda src: sorted(
            (decode_example(src[i]) for i in range(len(src))),  # noqa: E731
            key=lambda d: d["key"],
        )
        assert rows(a) == rows(b)


def _train(workdir, env, *bindings):
    cmd = TRAIN + ["--workdir", str(workdir)] + [f"--gin_bindings={b}" for b in bindings]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _tensors(hf_dir) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(Path(hf_dir) / "model.safetensors"))


@pytest.mark.slow  # three short SFT runs (~3 min here); `make test-slow`
def test_sft_in_a_bucket_checkpoints_resumes_and_exports_like_a_local_run(emulator, tmp_path):
    from tests.fixtures.multiprocess import cpu_env

    env = cpu_env(1, **gcs_env(emulator))
    _train(tmp_path / "local", env, *AGENT_ONLY, "run_sft.num_steps=4")
    run = "gs://bucket/sft_run"
    _train(run, env, *AGENT_ONLY, "run_sft.num_steps=2")  # stops at its step-2 checkpoint
    with in_process(emulator):  # as if killed right after that checkpoint: a stage's record is
        from eigen_jax import paths  # written when it finishes, and the next run resumes it

        records = list((paths.resolve(run) / "stages").glob("*sft_agent*.json"))
        assert len(records) == 1, records
        records[0].unlink()
    _train(run, env, *AGENT_ONLY, "run_sft.num_steps=4")  # resumes: steps 3-4 only (below)

    with in_process(emulator):
        from eigen_jax import paths

        wd = paths.resolve(run) / "sft_agent"
        assert sorted(p.name for p in (wd / "checkpoints").iterdir()) == ["2", "4"]
        steps = [
            json.loads(x)["step"]
            for x in (wd / "tb" / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(x)
        ]
        assert steps == [1, 2, 3, 4]  # steps 3-4 came after the restore, not a restart
        exported = Path(paths.local_dir(wd / "hf"))
    local = tmp_path / "local" / "sft_agent" / "hf"
    assert json.loads((exported / "config.json").read_text()) == json.loads(
        (local / "config.json").read_text()
    )
    got, want = _tensors(exported), _tensors(local)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert (exported / "model.safetensors").read_bytes() == (
        local / "model.safetensors"
    ).read_bytes()
