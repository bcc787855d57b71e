"""Named TPU slices as deviceless devices, and the published numbers of their chips.

`libtpu` compiles for a topology it is only told about (`jax.experimental.topologies`), so a
CPU-only machine can build the real TPU executable of a program and read its per-chip memory.
Slice names follow Cloud TPU's: v5p counts TensorCores (2 per chip, "megacore"), v5e/v6e
count chips.
"""

from __future__ import annotations

import dataclasses
import os
import re

import jax


@dataclasses.dataclass(frozen=True)
class Chip:
    """Published per-chip figures (Cloud TPU system-architecture pages)."""

    kind: str
    hbm_bytes: int
    peak_bf16_flops: float  # FLOP/s
    hbm_bytes_per_s: float
    cores_per_chip: int  # TensorCores a slice name counts per chip
    config_name: str  # libtpu chip_config_name
    ndim: int  # torus dimensions


GIB, GB = 2**30, 10**9
CHIPS = {
    "v4": Chip("v4", 32 * GIB, 275e12, 1228 * GB, 2, "megacore", 3),
    "v5e": Chip("v5e", 16 * GIB, 197e12, 819 * GB, 1, "default", 2),
    "v5p": Chip("v5p", 95 * GIB, 459e12, 2765 * GB, 2, "megacore", 3),
    "v6e": Chip("v6e", 32 * GIB, 918e12, 1640 * GB, 1, "default", 2),
}
# chips -> torus shape (the shapes Cloud TPU provisions for each slice size)
_SHAPES_2D = {
    1: (1, 1),
    4: (2, 2),
    8: (2, 4),
    16: (4, 4),
    32: (4, 8),
    64: (8, 8),
    128: (8, 16),
    256: (16, 16),
}
_SHAPES_3D = {
    4: (2, 2, 1),
    8: (2, 2, 2),
    16: (2, 2, 4),
    32: (2, 4, 4),
    64: (4, 4, 4),
    128: (4, 4, 8),
    256: (4, 8, 8),
    512: (8, 8, 8),
    1024: (8, 8, 16),
    2048: (8, 16, 16),
    4096: (16, 16, 16),
}


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str
    chip: Chip
    shape: tuple[int, ...]
    num_slices: int = 1

    @property
    def chips(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n * self.num_slices

    def devices(self) -> list:
        """The slice's chips as deviceless jax devices (each a compile target, never run)."""
        from jax.experimental import topologies

        # libtpu takes a machine-wide lock meant for processes that own chips; a deviceless
        # compile owns none, so several (test workers, parallel sweeps) may run at once.
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
        host = (2, 2, 1) if self.chip.ndim == 3 else (2, 2)
        host = tuple(min(h, s) for h, s in zip(host, self.shape)) + (1,) * (3 - len(host))
        desc = topologies.get_topology_desc(
            platform="tpu",
            topology_name=f"{self.chip.kind}:{'x'.join(map(str, self.shape))}",
            chip_config_name=self.chip.config_name,
            chips_per_host_bounds=host,
            num_slices=self.num_slices,
        )
        return list(desc.devices)


def parse_topology(name: str, num_slices: int = 1) -> Topology:
    """`v5p-64` -> 32 v5p chips as 2x4x4; raises ValueError naming the problem."""
    match = re.fullmatch(r"(v4|v5e|v5p|v6e)-(\d+)", name.strip().lower())
    if not match:
        raise ValueError(
            f"unknown topology {name!r}; expected <chip>-<size> with chip in "
            f"{sorted(CHIPS)}, e.g. v5p-64, v6e-128, v5e-256"
        )
    chip = CHIPS[match.group(1)]
    size = int(match.group(2))
    if size % chip.cores_per_chip:
        raise ValueError(
            f"topology {name!r}: {chip.kind} slices count {chip.cores_per_chip} "
            f"cores per chip, {size} is not a multiple"
        )
    chips = size // chip.cores_per_chip
    shapes = _SHAPES_3D if chip.ndim == 3 else _SHAPES_2D
    if chips not in shapes:
        raise ValueError(
            f"topology {name!r}: no {chip.kind} slice of {chips} chips; known "
            f"sizes: {[n * chip.cores_per_chip for n in sorted(shapes)]}"
        )
    if num_slices < 1:
        raise ValueError(f"num_slices must be >= 1, got {num_slices}")
    return Topology(name, chip, shapes[chips], num_slices)


def chip_of_device(device: jax.Device) -> Chip | None:
    """The `Chip` entry of a (deviceless or real) TPU device, None elsewhere."""
    kind = getattr(device, "device_kind", "").lower()
    table = {
        "tpu v4": "v4",
        "tpu v5 lite": "v5e",
        "tpu v5e": "v5e",
        "tpu v5p": "v5p",
        "tpu v5": "v5p",
        "tpu v6 lite": "v6e",
        "tpu v6e": "v6e",
    }
    return CHIPS.get(table.get(kind, ""))
