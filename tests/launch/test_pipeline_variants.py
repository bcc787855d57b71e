"""Ablation wiring of the pipeline: several GRPO stages in their own gin scopes read the recipe's
`grpo/...` bindings like the plain stage, differ only in their overrides, register their
checkpoints by name, and a base checkpoint starts a run (tokenizer, SFT init, base user)."""

from __future__ import annotations

from pathlib import Path

import gin
import pytest

from eigen_jax import scopes
from eigen_jax.rl.rollout import RolloutConfig
from launch import pipeline, pretrain_stages

REPO = Path(__file__).resolve().parents[2]


@gin.configurable
def seeded_context(ctx):
    """A stand-in for the stages before GRPO: the checkpoints they would have made."""
    ctx.tokenizer_dir = "tok"
    ctx.hf_dirs.update(agent="agent/hf", user="user/hf", base="base/hf")
    return "seeded"


CONFIG = """
GRPOConfig.group_size = 4
GRPOConfig.dynamic_filtering = True
RolloutConfig.max_steps = 30
grpo/RolloutConfig.max_errors = 3
run_pipeline.stages = [@seeded_context, @grpo_stage, @no_filter/grpo_stage, @base_user/grpo_stage]
no_filter/grpo_stage.name = 'grpo_no_filter'
no_filter/grpo_stage.algorithm_overrides = {'dynamic_filtering': False}
base_user/grpo_stage.name = 'grpo_base_user'
base_user/grpo_stage.user = 'base'
"""


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    calls = []

    def fake_run_grpo(workdir, **kwargs):
        rollout = scopes.configured(RolloutConfig, scopes.GRPO)  # as run_grpo reads it
        calls.append(dict(kwargs, workdir=workdir, rollout=rollout))
        return {"hf_dir": f"{workdir}/hf", "reward_curve": [[1, 0.0]]}

    monkeypatch.setattr("eigen_jax.rl.grpo.run_grpo", fake_run_grpo)
    gin.parse_config(CONFIG)
    yield calls
    gin.clear_config()


def test_scoped_grpo_variants_keep_the_recipe_and_differ_only_in_overrides(recorded, tmp_path):
    ctx = pipeline.run_pipeline(str(tmp_path))
    plain, no_filter, base_user = recorded
    for call in recorded:
        assert call["rollout"].max_errors == 3 and call["rollout"].max_steps == 30
        assert call["algorithm"].group_size == 4
        assert call["policy_hf_dir"] == "agent/hf"
    assert plain["algorithm"].dynamic_filtering and base_user["algorithm"].dynamic_filtering
    assert not no_filter["algorithm"].dynamic_filtering
    assert (plain["user_hf_dir"], base_user["user_hf_dir"]) == ("user/hf", "base/hf")
    assert Path(no_filter["workdir"]).name == "grpo_no_filter"
    assert ctx.hf_dirs["grpo_no_filter"].endswith("grpo_no_filter/hf")
    assert set(ctx.results) == {"grpo", "grpo_no_filter", "grpo_base_user"}


def test_an_override_that_is_not_a_grpo_field_fails_naming_it(recorded, tmp_path):
    ctx = pipeline.RunContext(workdir=str(tmp_path))
    ctx.hf_dirs.update(agent="a", user="u")
    with pytest.raises(TypeError, match="no_such_knob"):
        pipeline.grpo_stage(ctx, algorithm_overrides={"no_such_knob": 1})


def test_base_model_stage_sets_the_tokenizer_and_the_base_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path is found in the repository
    ctx = pipeline.RunContext(workdir=str(tmp_path))
    assert pretrain_stages.base_model_stage(ctx, "checkpoints/tiny-base") == "base_model"
    assert ctx.tokenizer_dir == ctx.hf_dir("base", "test") == str(REPO / "checkpoints/tiny-base")
    with pytest.raises(FileNotFoundError, match="no HF checkpoint with a tokenizer at /nowhere"):
        pretrain_stages.base_model_stage(ctx, "/nowhere")
    fresh = pipeline.RunContext(workdir=str(tmp_path))
    with pytest.raises(ValueError, match="needs the base_model stage before it"):
        pipeline.sft_stage(fresh, init_from="base", run=lambda **kw: {})
