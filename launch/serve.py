"""Serve a checkpoint: `python launch/serve.py --checkpoint DIR [--host 127.0.0.1 --port 30000]
[--num_slots 8] [--max_len N]` (default: the model's context).

Routes: POST /generate (SGLang native), POST /v1/chat/completions (OpenAI, with tools),
GET /v1/models, /health, /get_model_info. With `--export_only` it writes the checkpoint for
SGLang to `--export_dir` and prints the sglang-jax (CPU/TPU) and SGLang (GPU) launch commands
instead of serving. A missing or broken checkpoint ends the run with one line and exit code 1.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", None, "HF checkpoint dir: config.json, safetensors, tokenizer.")
flags.DEFINE_string("host", "127.0.0.1", "interface to bind (127.0.0.1: this machine only).")
flags.DEFINE_integer("port", 30000, "port to listen on.", lower_bound=1, upper_bound=65535)
flags.DEFINE_integer("num_slots", 8, "requests decoded together (KV-cache rows).", lower_bound=1)
flags.DEFINE_integer(
    "max_len",
    None,
    "tokens per request: prompt + generation (default: the "
    "model's context, config.json max_position_embeddings).",
    lower_bound=2,
)
flags.DEFINE_string("served_model_name", None, "model id in /v1/models (default: dir name).")
flags.DEFINE_enum(
    "dtype",
    None,
    ["float32", "bfloat16", "float16"],
    "weights/activations dtype (default: the checkpoint's).",
)
flags.DEFINE_enum(
    "tool_parser",
    None,
    ["hermes", "llama3_json"],
    "tool-call format (default: the checkpoint's prompt_format.json, else hermes).",
)
flags.DEFINE_string("platform", None, "force a JAX platform (cpu, gpu, tpu).")
flags.DEFINE_bool("export_only", False, "export for SGLang and print launch commands; no serving.")
flags.DEFINE_string("export_dir", None, "where --export_only writes (default: DIR-sglang).")
flags.DEFINE_integer(
    "tp_size", 1, "tensor-parallel size printed in the SGLang commands.", lower_bound=1
)
flags.mark_flag_as_required("checkpoint")


def _export() -> None:
    from eigen_jax.serve.export import export_checkpoint, sglang_commands

    out = FLAGS.export_dir or FLAGS.checkpoint.rstrip("/") + "-sglang"
    files = export_checkpoint(FLAGS.checkpoint, out, FLAGS.dtype)
    print(f"exported {len(files)} files to {os.path.abspath(out)}")
    parser = FLAGS.tool_parser or "hermes"
    for name, command in sglang_commands(
        out, FLAGS.host, FLAGS.port, parser, FLAGS.tp_size
    ).items():
        print(f"# {name}\n{command}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.platform:
        os.environ["JAX_PLATFORMS"] = FLAGS.platform
    from eigen_jax.serve.server import CheckpointError, check_checkpoint_dir

    try:
        check_checkpoint_dir(FLAGS.checkpoint)
        if FLAGS.export_only:
            _export()
            return
        from eigen_jax.serve.app import serve
        from eigen_jax.serve.server import ModelServer

        server = ModelServer.load(
            FLAGS.checkpoint,
            num_slots=FLAGS.num_slots,
            max_len=FLAGS.max_len,
            model_name=FLAGS.served_model_name,
            dtype=FLAGS.dtype,
            tool_parser=FLAGS.tool_parser,
        )
    except (CheckpointError, ValueError) as err:
        sys.exit(f"error: {err}")
    logging.info("serving %s on http://%s:%d", server.model_name, FLAGS.host, FLAGS.port)
    serve(server, FLAGS.host, FLAGS.port)


def run() -> None:
    """The `eigen-serve` console script (setup.py) and `python -m launch.serve`."""
    app.run(main)


if __name__ == "__main__":
    run()
