"""Compile programs for a target and report what XLA says each one needs per chip.

The numbers are XLA's own (`Compiled.memory_analysis()` / `cost_analysis()` of the partitioned
per-chip program), not estimates: a program fits when its peak (arguments + outputs - donated
aliases + temporaries) plus what stays allocated beside it (`Program.resident`) is within the
chip's HBM. The roofline time is max(FLOPs / peak bf16 FLOP/s, bytes accessed / HBM bandwidth)
from the chip table: a lower bound for one call, not a prediction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import time
from typing import Any

import jax

from eigen_jax.aot.programs import Program, per_chip_bytes
from eigen_jax.aot.topology import Chip


@dataclasses.dataclass
class ProgramReport:
    name: str
    peak_bytes_per_chip: int
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    resident_bytes: int
    fits: bool
    compile_seconds: float
    flops_per_chip: float
    roofline_step_seconds: float
    xla_flops_per_chip: float
    xla_bytes_accessed_per_chip: float
    error: str | None = None  # the compiler's own verdict when it refused (out of HBM)


def memory_of(compiled) -> dict[str, int]:
    """XLA's memory analysis of a compiled program, and its peak (args + outs - aliases + temps)."""
    m = compiled.memory_analysis()
    out = {
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "alias_bytes": int(m.alias_size_in_bytes),
        "temp_bytes": int(m.temp_size_in_bytes),
    }
    out["peak_bytes_per_chip"] = (
        out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + out["temp_bytes"]
    )
    return out


def _cost(compiled) -> tuple[float, float]:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    cost = cost or {}
    return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


def compile_program(
    program: Program, chip: Chip, hbm_bytes: int | None = None
) -> tuple[ProgramReport, Any]:
    """(report, compiled executable) of one program."""
    capacity = chip.hbm_bytes if hbm_bytes is None else hbm_bytes
    t0 = time.perf_counter()
    ctx = jax.set_mesh(program.mesh) if program.mesh is not None else contextlib.nullcontext()
    resident = per_chip_bytes(program.resident) if program.resident is not None else 0
    try:
        with ctx:
            compiled = program.fn.lower(*program.args, **program.kwargs).compile()
    except jax.errors.JaxRuntimeError as e:
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        return _refused(program, str(e), time.perf_counter() - t0, resident), None
    seconds = time.perf_counter() - t0
    mem = memory_of(compiled)
    xla_flops, xla_bytes = _cost(compiled)
    chips = program.mesh.size if program.mesh is not None else 1
    flops = program.model_flops / chips
    reads = program.reads * mem["argument_bytes"]
    roofline = max(flops / chip.peak_bf16_flops, reads / chip.hbm_bytes_per_s)
    report = ProgramReport(
        program.name,
        resident_bytes=resident,
        fits=mem["peak_bytes_per_chip"] + resident <= capacity,
        compile_seconds=round(seconds, 2),
        flops_per_chip=flops,
        roofline_step_seconds=roofline,
        xla_flops_per_chip=xla_flops,
        xla_bytes_accessed_per_chip=xla_bytes,
        **mem,
    )
    return report, compiled


def _refused(program: Program, message: str, seconds: float, resident: int) -> ProgramReport:
    """The TPU compiler refuses a program that cannot fit HBM; its message gives the
    temporaries it needed ("... HLO temporaries (100.58G) ..."), in GiB."""
    first = message.strip().splitlines()[0]
    match = re.search(r"temporaries \(([\d.]+)([KMGT])\)", first)
    temp = int(float(match.group(1)) * 1024 ** "KMGT".index(match.group(2)) * 1024) if match else 0
    args = per_chip_bytes(program.args)
    return ProgramReport(
        program.name,
        peak_bytes_per_chip=args + temp,
        argument_bytes=args,
        output_bytes=0,
        alias_bytes=0,
        temp_bytes=temp,
        resident_bytes=resident,
        fits=False,
        compile_seconds=round(seconds, 2),
        flops_per_chip=0.0,
        roofline_step_seconds=0.0,
        xla_flops_per_chip=0.0,
        xla_bytes_accessed_per_chip=0.0,
        error=first[first.find("RESOURCE_EXHAUSTED") :],
    )


def render_table(reports: list[ProgramReport], hbm_bytes: int) -> str:
    gb = lambda b: f"{b / 2**30:7.2f}"  # noqa: E731
    lines = [
        f"{'program (GiB/chip)':<22} {'peak':>8} {'+resident':>9} {'of HBM':>7} "
        f"{'args':>8} {'temp':>8} {'fits':>5} {'compile s':>9} {'TFLOP':>8} "
        f"{'roofline s':>10}"
    ]
    for r in reports:
        used = r.peak_bytes_per_chip + r.resident_bytes
        lines.append(
            f"{r.name:<22} {gb(r.peak_bytes_per_chip):>8} {gb(r.resident_bytes):>9} "
            f"{100 * used / hbm_bytes:6.1f}% {gb(r.argument_bytes):>8} "
            f"{gb(r.temp_bytes):>8} {'yes' if r.fits else 'NO':>5} "
            f"{r.compile_seconds:9.1f} {r.flops_per_chip / 1e12:8.2f} "
            f"{r.roofline_step_seconds:10.3f}"
        )
    return "\n".join(lines)


def write_report(
    path, topology: str, chips: int, hbm_bytes: int, reports: list[ProgramReport], **extra
) -> dict:
    doc = {
        "topology": topology,
        "chips": chips,
        "hbm_bytes_per_chip": hbm_bytes,
        **extra,
        "programs": [dataclasses.asdict(r) for r in reports],
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    return doc
