"""SamplingParams validation: bad settings fail early with a message naming the field."""

import pytest

from eigen_jax.sampling import SamplingParams


def test_defaults_and_normalisation():
    p = SamplingParams(stop_token_ids=[2, 7], stop_strings="</s>")
    assert p.stop_token_ids == (2, 7) and p.stop_strings == ("</s>",)
    assert not p.greedy and SamplingParams(temperature=0).greedy
    assert hash(p) == hash(SamplingParams(stop_token_ids=(2, 7), stop_strings=["</s>"]))


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(temperature=-0.1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=-1), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(stop_token_ids=[-3]), "stop_token_ids"),
        (dict(stop_strings=[""]), "stop_strings"),
    ],
)
def test_bad_values_are_rejected(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**kwargs)


def test_bad_types_are_rejected():
    with pytest.raises(TypeError, match="stop_token_ids"):
        SamplingParams(stop_token_ids=[1.5])
    with pytest.raises(TypeError, match="stop_strings"):
        SamplingParams(stop_strings=[3])
