"""Infrastructure flags and start-up shared by the launch scripts (gin, multi-host, platform)."""

from __future__ import annotations

import os
import sys

from absl import flags, logging

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def define_infra_flags(workdir_default: str = "workdir") -> None:
    flags.DEFINE_multi_string("gin_file", [], "gin config files (searched in --gin_search_paths).")
    flags.DEFINE_multi_string(
        "gin_bindings", [], "individual gin bindings, e.g. 'run_sft.num_steps=10'."
    )
    flags.DEFINE_multi_string("gin_search_paths", [REPO], "where gin files are looked up.")
    flags.DEFINE_string(
        "workdir", workdir_default, "output directory (checkpoints, logs, reports)."
    )
    flags.DEFINE_string("coordinator_address", None, "multi-host: jax.distributed coordinator.")
    flags.DEFINE_integer("num_processes", None, "multi-host: number of processes.")
    flags.DEFINE_integer("process_id", None, "multi-host: this process's index.")
    flags.DEFINE_string("platform", None, "force a JAX platform (cpu, gpu, tpu).")


def setup_jax() -> None:
    if FLAGS.platform:
        os.environ["JAX_PLATFORMS"] = FLAGS.platform
    from eigen_jax import sharding

    kwargs = {
        k: v
        for k, v in (
            ("coordinator_address", FLAGS.coordinator_address),
            ("num_processes", FLAGS.num_processes),
            ("process_id", FLAGS.process_id),
        )
        if v is not None
    }
    sharding.initialize_distributed(**kwargs)


class _QuietLibraries:
    """Drops libraries' INFO lines (orbax's per-save messages, etils, tensorstore) from the
    console; they still reach the run's log file."""

    NOISY = ("/orbax/", "/etils/", "/tensorstore/", "/grain/", "/tensorflow_datasets/")

    def filter(self, record) -> bool:
        import logging as py_logging

        return record.levelno >= py_logging.WARNING or not any(
            n in record.pathname for n in self.NOISY
        )


def setup_logging(workdir: str | None) -> None:
    """Everything at INFO into `workdir/logs/PROGRAM.process_N.log` (local workdirs), the
    console without library noise."""
    import logging as py_logging

    import jax

    handler = logging.get_absl_handler()
    handler.addFilter(_QuietLibraries())
    if not workdir or "://" in workdir:
        return
    logs = os.path.join(os.path.abspath(workdir), "logs")
    os.makedirs(logs, exist_ok=True)
    program = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    log_file = py_logging.FileHandler(
        os.path.join(logs, f"{program}.process_{jax.process_index()}.log")
    )
    log_file.setFormatter(
        py_logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s"
        )
    )
    py_logging.getLogger().addHandler(log_file)


def parse_gin(files=None, bindings=None, search_paths=None) -> None:
    """Parse gin files/bindings (default: the flags); errors (unknown binding, missing file) end
    the run with one line."""
    import gin

    import launch.configurables  # noqa: F401 - registers what gin files bind

    for p in FLAGS.gin_search_paths if search_paths is None else search_paths:
        gin.add_config_file_search_path(p)
    try:
        gin.parse_config_files_and_bindings(
            FLAGS.gin_file if files is None else files,
            FLAGS.gin_bindings if bindings is None else bindings,
        )
    except (OSError, ValueError, KeyError, NameError) as e:
        logging.error("gin configuration error: %s", e)
        sys.exit(f"gin configuration error: {e}")
