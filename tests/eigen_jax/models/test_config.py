"""ModelConfig: HF conversion both ways, presets, validation."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from eigen_jax.models import PRESETS, ModelConfig, get_config
from tests.fixtures.tiny_hf import TINY_FAMILIES, tiny_hf_config


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_hf_config_round_trip(family):
    hf = tiny_hf_config(family)
    ours = ModelConfig.from_hf_config(hf)
    assert ours.family == family
    exported = ours.to_hf_config()
    again = AutoConfig.for_model(
        exported["model_type"], **{k: v for k, v in exported.items() if k != "model_type"}
    )
    assert ModelConfig.from_hf_config(again) == ours
    assert ModelConfig.from_hf_config(exported) == ours  # the plain dict path
    for key in ("hidden_size", "num_key_value_heads", "tie_word_embeddings", "rms_norm_eps"):
        assert getattr(again, key) == getattr(hf, key), key
    expected_head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    assert ours.head_dim == expected_head_dim


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_num_params_matches_transformers(family):
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(tiny_hf_config(family))
    assert ModelConfig.from_hf_config(hf.config).num_params() == sum(
        p.numel() for p in hf.parameters()
    )


def test_presets_have_released_sizes():
    # Public parameter counts of the released models, to 3 significant digits.
    expected = {
        "qwen3-0.6b": 0.596e9,
        "qwen3-8b": 8.19e9,
        "qwen3-32b": 32.8e9,
        "qwen2.5-0.5b": 0.494e9,
        "qwen2.5-7b": 7.62e9,
        "qwen2.5-72b": 72.7e9,
        "llama3.1-8b": 8.03e9,
        "llama3.1-70b": 70.6e9,
    }
    for name, count in expected.items():
        assert get_config(name).num_params() == pytest.approx(count, rel=5e-3), name
    assert 20e6 < get_config("bench-25m").num_params() < 30e6
    assert 85e6 < get_config("bench-100m").num_params() < 115e6
    assert all(ModelConfig(**spec) for spec in PRESETS.values())


def test_validation_errors_name_the_problem():
    base = dict(PRESETS["tiny-qwen3"])
    with pytest.raises(ValueError, match="num_kv_heads"):
        ModelConfig(**{**base, "num_kv_heads": 3})
    with pytest.raises(ValueError, match="remat"):
        ModelConfig(**{**base, "remat": "sometimes"})
    with pytest.raises(ValueError, match="dtype"):
        ModelConfig(**{**base, "dtype": "int8"})
    with pytest.raises(ValueError, match="rope_scaling type 'yarn'"):
        ModelConfig(**{**base, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(KeyError, match="unknown model preset"):
        get_config("gpt-5")
    hf = tiny_hf_config("qwen2").to_dict()
    with pytest.raises(ValueError, match="use_sliding_window"):
        ModelConfig.from_hf_config({**hf, "use_sliding_window": True})
    with pytest.raises(ValueError, match="unsupported model_type 'mistral'"):
        ModelConfig.from_hf_config({**hf, "model_type": "mistral", "architectures": None})
    with pytest.raises(ValueError, match="missing required key.*intermediate_size"):
        ModelConfig.from_hf_config({k: v for k, v in hf.items() if k != "intermediate_size"})


def test_overrides_and_dtype_aliases():
    cfg = ModelConfig.from_hf_config(tiny_hf_config("llama"), dtype="bf16", remat="full")
    assert cfg.dtype == "bfloat16" and cfg.param_dtype == "float32" and cfg.remat == "full"
    assert hash(cfg) == hash(cfg.replace())  # hashable despite the rope_scaling dict
