"""`python -m data_agents.tfds build ...`: TFDS's own `tfds build` command, without TensorFlow.

Why not `tfds build` itself: its entry point imports every subcommand, and `convert_format` needs
TensorFlow at import time; the `build` subcommand does not. This runs exactly that subcommand
(`tensorflow_datasets.scripts.cli.build.Args`, the same flags), e.g. from the repository root:

    python -m data_agents.tfds build data_agents/tfds/eigen_dialogues \
        --manual_dir data_agents/tfds/eigen_dialogues/dummy_data --data_dir /tmp/tfds \
        --file_format array_record
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "build":
        sys.exit(
            "usage: python -m data_agents.tfds build DATASET_DIR --manual_dir JOURNALS "
            "--data_dir OUT [--file_format array_record] [--config NAME] (tfds build's "
            "flags; --help lists them)"
        )
    import simple_parsing
    from tensorflow_datasets.scripts.cli import build

    simple_parsing.parse(
        build.Args, args=argv[1:], prog="python -m data_agents.tfds build"
    ).execute()


if __name__ == "__main__":
    main()
