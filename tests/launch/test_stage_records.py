"""The run folder: `run.json`/`config.gin` at start, a record of each finished stage's gin
bindings, and a resume under changed bindings that stops (or reruns from the changed stage)."""

import json

import gin
import pytest

from launch.pipeline import RunContext, run_pipeline
from launch.stage_records import StageConfigChanged, bound_values, changes, used_configurables


@gin.configurable
def _knob(value: int = 1) -> int:
    return value


def _stage(label: str):
    """A stage that writes its knob's value into `WORKDIR/LABEL/out.txt` and counts its runs."""

    def stage(ctx: RunContext, factor: int = 1) -> str:
        out = ctx.path(label)
        out.mkdir(parents=True, exist_ok=True)
        runs = out / "runs.txt"
        runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
        with gin.config_scope(label):
            (out / "out.txt").write_text(str(_knob() * factor))
        return label

    return gin.configurable(f"toy_{label}_stage")(stage)


STAGE_A, STAGE_B = _stage("a"), _stage("b")


@pytest.fixture
def config():
    def parse(*bindings: str) -> None:
        gin.clear_config()
        gin.parse_config(list(bindings))

    yield parse
    gin.clear_config()


def runs(wd, label: str) -> int:
    return int((wd / label / "runs.txt").read_text())


def test_operative_bindings_of_a_block_are_the_ones_it_used(config):
    config("_knob.value = 3", "b/_knob.value = 5", "toy_a_stage.factor = 2")
    with used_configurables() as used:
        with gin.config_scope("b"):
            assert _knob() == 5
    values = {
        k.rsplit(".", 2)[0].split("/")[0] if "/" in k else "": v
        for k, v in bound_values(used).items()
    }
    assert values == {"": "3", "b": "5"}  # both knob bindings, not toy_a_stage's factor
    assert changes({"x": "1", "y": "2"}, {"x": "1", "y": "3", "z": "0"}) == [
        "y: 2 -> 3",
        "z: <unset> -> 0",
    ]


def test_run_folder_records_how_the_run_was_made(tmp_path, config):
    config("toy_a_stage.factor = 2", "a/_knob.value = 7")
    ctx = run_pipeline(str(tmp_path), stages=[STAGE_A, STAGE_B])
    assert (tmp_path / "a" / "out.txt").read_text() == "14" and ctx.timings.keys() == {"a", "b"}
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["processes"] == 1 and info["packages"]["jax"] and info["platform"] == "cpu"
    assert len(info["git"]["commit"]) == 40 and isinstance(info["git"]["dirty"], bool)
    assert "a/_knob.value = 7" in (tmp_path / "config.gin").read_text()
    assert "factor = 2" in (tmp_path / "operative_config.gin").read_text()
    record = json.loads((tmp_path / "stages" / "00_a.json").read_text())
    assert any(k.endswith("toy_a_stage.factor") for k in record["bindings"])
    # b never read a's scoped knob nor a's factor
    b = json.loads((tmp_path / "stages" / "01_b.json").read_text())["bindings"]
    assert not any("factor" in k or k.startswith("a/") for k in b)


def test_changed_bindings_of_a_finished_stage_stop_the_resume(tmp_path, config):
    config("b/_knob.value = 1")
    run_pipeline(str(tmp_path), stages=[STAGE_A, STAGE_B])
    config("b/_knob.value = 2", "a/_knob.value = 1")  # a binding added, even at the default
    with pytest.raises(StageConfigChanged, match=r"stage a finished with other settings"):
        run_pipeline(str(tmp_path), stages=[STAGE_A, STAGE_B])
    config("b/_knob.value = 2")
    with pytest.raises(StageConfigChanged, match=r"stage b .*_knob\.value: 1 -> 2"):
        run_pipeline(str(tmp_path), stages=[STAGE_A, STAGE_B])
    assert runs(tmp_path, "a") == 2 and runs(tmp_path, "b") == 1  # b's outputs untouched
    assert (tmp_path / "b" / "out.txt").read_text() == "1"


def test_rerun_changed_moves_the_stage_and_later_ones_aside(tmp_path, config):
    config()
    run_pipeline(str(tmp_path), stages=[STAGE_A, STAGE_B])
    config("a/_knob.value = 4")
    run_pipeline(str(tmp_path), stages=[STAGE_A, STAGE_B], rerun_changed=True)
    assert (tmp_path / "a" / "out.txt").read_text() == "4" and runs(tmp_path, "a") == 1
    assert runs(tmp_path, "b") == 1  # b depended on a: rerun too
    assert (tmp_path / "a.stale-0" / "out.txt").read_text() == "1"
    assert (tmp_path / "b.stale-0" / "runs.txt").exists()
    run_pipeline(str(tmp_path), stages=[STAGE_A, STAGE_B])  # the same settings again: no stop
    assert runs(tmp_path, "a") == 2
