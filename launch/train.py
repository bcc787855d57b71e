"""Train: `eigen-train --gin_file gin/X.gin [--gin_bindings ...] [--workdir DIR]` (installed), or
`python launch/train.py ...` / `python -m launch.train ...` in a checkout.

absl flags carry infrastructure only; gin chooses the stage(s) and every scientific knob. The gin
files bind `launch.pipeline.run_pipeline.stages` (agent SFT, user SFT, GRPO, evaluation, or a
pipeline of them). An unknown binding fails here, before any compute.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from launch import common  # noqa: E402

FLAGS = flags.FLAGS
common.define_infra_flags()
common.define_wandb_flags()
flags.DEFINE_bool(
    "rerun_changed_stages",
    False,
    "when a finished stage's gin bindings changed since it ran, move its outputs "
    "(and every later stage's) aside and run them again instead of stopping.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if missing := common.missing_gin_file():
        sys.exit(missing)
    common.setup_wandb(FLAGS.workdir)
    common.setup_jax()
    common.setup_logging(FLAGS.workdir)
    common.parse_gin()
    from launch.pipeline import run_pipeline

    try:
        result = run_pipeline(workdir=FLAGS.workdir, rerun_changed=FLAGS.rerun_changed_stages)
    except ValueError as e:  # bad input (a knob out of range, a mismatched checkpoint...)
        logging.debug("traceback of the error below", exc_info=True)  # shown with -v 1
        sys.exit(f"error: {str(e).splitlines()[0]}")  # gin appends "In call to ..." lines
    logging.info("done: %s (report: %s)", result.workdir, result.report)


def run() -> None:
    """The `eigen-train` console script (setup.py) and `python -m launch.train`."""
    app.run(main)


if __name__ == "__main__":
    run()
