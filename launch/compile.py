"""Compile every program of a training run for a TPU topology, without the TPU.

    python launch/compile.py --gin_file gin/tpu/qwen3_8b_v5p64.gin --topology v5p-64 \
        --workdir workdir/compile

From the same gin file `launch/train.py` reads, it builds each program the run compiles (agent
and user SFT steps, the GRPO step, the sampler's prefill and decode; `eigen_jax.aot.programs`)
from abstract arrays on the topology's deviceless chips and the gin mesh, compiles it, and
prints XLA's per-chip memory, FLOPs and compile time (`compile_report.json` in --workdir).
Exits non-zero with one line when a program does not fit, and before any compile when the
topology is unknown, the mesh does not match it, or the gin file names no model size.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # the host compiles; TPU chips are only described

from absl import app, flags, logging  # noqa: E402

from launch import common  # noqa: E402

FLAGS = flags.FLAGS
common.define_gin_flags()
flags.DEFINE_string("topology", None, "target slice, e.g. v5p-64, v6e-128, v5e-256.")
flags.DEFINE_integer("num_slices", 1, "slices (multi-slice runs).")
flags.DEFINE_string("workdir", "workdir/compile", "where compile_report.json is written.")
flags.DEFINE_alias("output_dir", "workdir")  # the earlier name
flags.DEFINE_list("programs", [], "compile only these (names or prefixes); default: all.")
flags.mark_flag_as_required("topology")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from eigen_jax.aot import plan
    from eigen_jax.aot.report import compile_program, render_table, write_report
    from eigen_jax.aot.topology import parse_topology

    if missing := common.missing_gin_file():
        sys.exit(f"compile: {missing}")
    try:
        topology = parse_topology(FLAGS.topology, FLAGS.num_slices)
    except ValueError as e:
        sys.exit(f"compile: {e}")
    common.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.gin_search_paths)
    try:
        programs = plan.programs_from_gin(topology.devices(), only=FLAGS.programs)
    except plan.PlanError as e:
        sys.exit(f"compile: {e}")
    reports = []
    for program in programs:
        logging.info("compiling %s for %s ...", program.name, topology.name)
        report, _ = compile_program(program, topology.chip)
        reports.append(report)
        logging.info("%s: %.1f s", program.name, report.compile_seconds)
    hbm = topology.chip.hbm_bytes
    print(
        f"{topology.name}: {topology.chips} x {topology.chip.kind}, "
        f"{hbm / 2**30:.0f} GiB HBM per chip"
    )
    print(render_table(reports, hbm))
    os.makedirs(FLAGS.workdir, exist_ok=True)
    path = os.path.join(FLAGS.workdir, "compile_report.json")
    write_report(
        path,
        topology.name,
        topology.chips,
        hbm,
        reports,
        gin_files=list(FLAGS.gin_file),
        gin_bindings=list(FLAGS.gin_bindings),
    )
    print(f"wrote {path}")
    for r in reports:
        if not r.fits:
            gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
            sys.exit(
                f"compile: program {r.name} does not fit: peak "
                f"{gib(r.peak_bytes_per_chip + r.resident_bytes)} per chip (incl. "
                f"{gib(r.resident_bytes)} resident) > {gib(hbm)} HBM of a "
                f"{topology.chip.kind} chip"
            )


def run() -> None:
    """The `eigen-compile` console script (setup.py) and `python -m launch.compile`."""
    app.run(main)


if __name__ == "__main__":
    run()
