"""Slice names -> deviceless TPU chips (libtpu describes them; nothing runs)."""

import pytest

from eigen_jax.aot.topology import CHIPS, chip_of_device, parse_topology


@pytest.mark.parametrize(
    "name,chips,kind",
    [
        ("v5p-64", 32, "v5p"),
        ("v6e-128", 128, "v6e"),
        ("v5e-256", 256, "v5e"),
        ("v5e-4", 4, "v5e"),
        ("v5p-8", 4, "v5p"),
    ],
)
def test_named_slices_give_their_chips(name, chips, kind):
    topo = parse_topology(name)
    devices = topo.devices()
    assert topo.chips == chips == len(devices)
    assert {chip_of_device(d) for d in devices} == {CHIPS[kind]}


@pytest.mark.parametrize(
    "name,match",
    [
        ("v7x-64", "unknown topology"),
        ("v5p-63", "not a multiple"),
        ("v5e-12", "no v5e slice of 12 chips"),
        ("tpu", "unknown topology"),
    ],
)
def test_bad_names_fail_with_one_line(name, match):
    with pytest.raises(ValueError, match=match):
        parse_topology(name)
