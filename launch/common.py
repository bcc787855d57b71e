"""Infrastructure flags and start-up shared by the launch scripts (gin, multi-host, platform)."""

from __future__ import annotations

import os
import sys

from absl import flags, logging

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_FILE_HELP = (
    "gin config files: as given (relative to the current directory), else under "
    "--gin_search_paths, else among the configs shipped with the package (gin/...)."
)


def config_root() -> str:
    """The folder that holds the `gin/` configs, so `gin/quickstart.gin` and a config's
    `include 'gin/...'` resolve from any directory: launch/ itself in an installed wheel (setup.py
    ships gin/ as launch/gin), the repository in a source checkout or editable install."""
    for root in (os.path.dirname(os.path.abspath(__file__)), REPO):
        if os.path.isfile(os.path.join(root, "gin", "quickstart.gin")):
            return root
    return REPO


def define_infra_flags(workdir_default: str = "workdir") -> None:
    define_gin_flags()
    flags.DEFINE_string(
        "workdir", workdir_default, "output directory (checkpoints, logs, reports)."
    )
    flags.DEFINE_string("coordinator_address", None, "multi-host: jax.distributed coordinator.")
    flags.DEFINE_integer("num_processes", None, "multi-host: number of processes.")
    flags.DEFINE_integer("process_id", None, "multi-host: this process's index.")
    flags.DEFINE_string("platform", None, "force a JAX platform (cpu, gpu, tpu).")


def define_gin_flags() -> None:
    flags.DEFINE_multi_string("gin_file", [], GIN_FILE_HELP)
    flags.DEFINE_multi_string(
        "gin_bindings", [], "individual gin bindings, e.g. 'run_sft.num_steps=10'."
    )
    flags.DEFINE_multi_string(
        "gin_search_paths", [], "more folders where gin files (and their includes) are looked up."
    )


def define_wandb_flags() -> None:
    flags.DEFINE_string(
        "wandb_project",
        None,
        "also log every training metric (TensorBoard's tags and steps) to this Weights & Biases "
        "project, one W&B run per stage (process 0; needs `pip install 'eigen-jax[wandb]'`).",
    )
    flags.DEFINE_enum(
        "wandb_mode",
        None,
        ["online", "offline", "disabled"],
        "W&B mode (default: the WANDB_MODE environment variable, else online).",
    )


def setup_wandb(workdir: str) -> None:
    """With --wandb_project, every metrics writer (process 0's) mirrors to W&B: the stages of the
    run in one group named after the run folder. Ends the run with one line when wandb is not
    installed, before anything is set up or written."""
    if not FLAGS.wandb_project:
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        sys.exit("--wandb_project needs the wandb package: pip install 'eigen-jax[wandb]'")
    from eigen_jax.train.metrics import WandbSettings, mirror_to_wandb

    mirror_to_wandb(
        WandbSettings(
            project=FLAGS.wandb_project,
            mode=FLAGS.wandb_mode,
            group=os.path.basename(os.path.normpath(workdir)),
            config={
                "workdir": workdir,
                "gin_files": list(FLAGS.gin_file),
                "gin_bindings": list(FLAGS.gin_bindings),
            },
        )
    )


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


def gin_search_paths(search_paths=None) -> list[str]:
    """`--gin_search_paths` (or `search_paths`), then the shipped configs' folder."""
    given = FLAGS.gin_search_paths if search_paths is None else search_paths
    return list(dict.fromkeys([*given, config_root()]))


def missing_gin_file(files=None, search_paths=None) -> str | None:
    """The one-line error for the first gin file (default: --gin_file) found neither as given nor
    under the search paths, where gin looks; None when all are there. Launchers check it before
    anything is set up or written. URLs are left to gin's own readers."""
    roots = gin_search_paths(search_paths)
    for f in FLAGS.gin_file if files is None else files:
        if "://" in f:
            continue
        candidates = [f] if os.path.isabs(f) else [f] + [os.path.join(r, f) for r in roots]
        if not any(os.path.isfile(c) for c in candidates):
            looked = ", ".join(dict.fromkeys([os.getcwd(), *roots]))
            return f"gin file not found: {f} (looked in {looked})"
    return None


def parse_gin(files=None, bindings=None, search_paths=None) -> None:
    """Parse gin files/bindings (default: the flags); errors (unknown binding, missing file) end
    the run with one line."""
    import gin

    import launch.configurables  # noqa: F401 - registers what gin files bind

    files = FLAGS.gin_file if files is None else files
    missing = missing_gin_file(files, search_paths)
    if missing:
        sys.exit(missing)
    for p in gin_search_paths(search_paths):
        gin.add_config_file_search_path(p)
    try:
        gin.parse_config_files_and_bindings(
            files, FLAGS.gin_bindings if bindings is None else bindings
        )
    except (OSError, ValueError, KeyError, NameError) as e:
        logging.error("gin configuration error: %s", e)
        sys.exit(f"gin configuration error: {e}")
