"""Generate synthetic dialogues: the EigenData engine (LLM backend) or the reference solver.

    python launch/generate_data.py --gin_file gin/data/outfitter_llm.gin \
        --server_url http://h1:30000 --server_url http://h2:30000 --domain outfitter --workdir runs/d1 \
        [--backend llm|reference] [--num_workers N --worker_index I] [--publish]

absl flags carry infrastructure only; rounds, plans, tasks per plan, temperatures... are gin
bindings of `SynthesisConfig` and `run_generation`. Resumable: rerun the same command after a crash.
`--publish` builds the TFDS dataset from every worker's journal (run it once, after all workers);
publishing again after the journals changed builds the next dataset version.
Bad input (unknown domain, unreachable server) ends the run at once with one line, and so does a
second copy of a worker on the same --workdir while the first runs, or a resume under a configuration
other than the one recorded in OUT/journals/config.json (`data_agents/run_dir.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gin

from data_agents.synthesis import SynthesisConfig, SynthesisEngine
from launch import common

FLAGS = flags.FLAGS
common.define_gin_flags()
flags.DEFINE_multi_string("server_url", [], "LLM server base URL (repeatable; balanced).")
flags.DEFINE_string("domain", "outfitter", "domain name: outfitter, tau2:airline, ...")
flags.DEFINE_string("workdir", None, "output directory (journals, prompts, report).")
flags.DEFINE_alias("out", "workdir")  # the earlier name
flags.DEFINE_enum("backend", "llm", ["llm", "reference"], "who writes the dialogues.")
flags.DEFINE_integer("num_workers", 1, "number of generation workers.")
flags.DEFINE_integer("worker_index", 0, "this worker's index in [0, num_workers).")
flags.DEFINE_bool("publish", False, "build the TFDS dataset from the journals at the end.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir for --publish (default OUT/tfds).")
flags.DEFINE_string("model", None, "model name sent with chat requests (OpenAI APIs need one).")
flags.DEFINE_bool("progress", True, "show a tqdm progress bar.")

SynthesisConfig = gin.external_configurable(SynthesisConfig, module="data_agents.synthesis")


class Progress:
    """tqdm bar: instances/s (tqdm's rate), acceptance and tokens/s in the postfix."""

    def __init__(self, total: int | None, llm=None, enabled: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="inst", disable=not enabled, dynamic_ncols=True)
        self.llm, self.t0 = llm, time.monotonic()
        self.accepted = self.done = 0

    def __call__(self, record) -> None:
        self.done += 1
        self.accepted += record.status == "accepted"
        post = {"acc": f"{self.accepted / self.done:.0%}"}
        usage = getattr(self.llm, "usage", None)
        if usage is not None:
            post["tok/s"] = f"{usage.total_tokens / max(time.monotonic() - self.t0, 1e-6):.0f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def fail(message: str) -> None:
    """End the run with one clear line (exit code 2, as documented)."""
    print("generate_data: " + " ".join(str(message).split()), file=sys.stderr, flush=True)
    sys.exit(2)


async def _llm_run(
    domain,
    config: SynthesisConfig,
    out: Path,
    client_concurrency: int,
    timeout_s: float,
    use_cache: bool,
) -> dict:
    from data_agents.llm import LLMClient

    if not FLAGS.server_url:
        fail("--backend=llm needs at least one --server_url")
    cache = out / f"llm_cache-w{FLAGS.worker_index:03d}.sqlite" if use_cache else None
    out.mkdir(parents=True, exist_ok=True)
    async with LLMClient(
        FLAGS.server_url,
        max_concurrency=client_concurrency,
        timeout_s=timeout_s,
        cache=cache,
        model=FLAGS.model,
    ) as llm:
        health = await llm.health()
        down = [u for u, ok in health.items() if not ok]
        if down and len(down) == len(health):
            fail(f"cannot reach any LLM server ({', '.join(down)}): /health did not answer 200")
        own = sum(
            1 for s in range(config.plans_per_round) if s % FLAGS.num_workers == FLAGS.worker_index
        )
        bar = Progress(own * config.tasks_per_plan * config.num_rounds, llm, FLAGS.progress)
        try:
            return await SynthesisEngine(
                llm,
                domain,
                out,
                config,
                domain_name=FLAGS.domain,
                worker_index=FLAGS.worker_index,
                num_workers=FLAGS.num_workers,
                model_name=FLAGS.model,
                on_record=bar,
            ).run()
        finally:
            bar.close()


def _require_checker_sandbox() -> None:
    """LLM-written checkers run only inside the OS sandbox: refuse to start where it cannot."""
    from data_agents.checkers import bwrap, sandbox
    from data_agents.checkers.seccomp import SeccompUnsupported

    try:
        bwrap.probe(os.geteuid(), sandbox.RUNNER)
    except (bwrap.SandboxUnavailable, SeccompUnsupported) as e:
        fail(str(e))


OPERATIONAL = ("max_concurrency", "barrier_timeout_s", "poll_s")  # change no instance's content


def run_config(synthesis_config: SynthesisConfig, **knobs) -> dict:
    """What decides the content of the journals, flat and named as a user would set it.

    Why: a resume must continue the same run. Server URLs, concurrency and timeouts may change
    between resumes (infrastructure); the domain, backend, sharding, model and every science knob
    may not.
    """
    config = {
        "--domain": FLAGS.domain,
        "--backend": FLAGS.backend,
        "--num_workers": FLAGS.num_workers,
        "--model": FLAGS.model,
    }
    config.update({f"run_generation.{k}": v for k, v in knobs.items()})
    if FLAGS.backend == "llm":
        config.update(
            {
                f"SynthesisConfig.{k}": v
                for k, v in dataclasses.asdict(synthesis_config).items()
                if k not in OPERATIONAL
            }
        )
    return config


def _claim_output(out: Path, config: dict) -> None:
    """Lock this worker's role on --workdir, then check/record the configuration (one line if not)."""
    from data_agents import run_dir

    role = (
        "reference"
        if FLAGS.backend == "reference"
        else f"worker-{FLAGS.worker_index:03d}-of-{FLAGS.num_workers:03d}"
    )
    try:
        run_dir.hold_lock(out, role)
        run_dir.record_config(out, config)
    except (run_dir.OutputInUse, run_dir.ConfigMismatch) as e:
        fail(str(e))


@gin.configurable
def run_generation(
    synthesis_config: SynthesisConfig | None = None,
    *,
    client_concurrency: int = 32,
    request_timeout_s: float = 300.0,
    use_response_cache: bool = True,
    reference_num_train: int = 400,
    reference_num_test: int = 0,
    domain_kwargs: dict | None = None,
) -> dict:
    """Run this worker's share of generation; optionally publish. Returns the summary."""
    from data_agents import domains

    out = Path(FLAGS.workdir)
    for name, value, least in (
        ("reference_num_train", reference_num_train, 0),
        ("reference_num_test", reference_num_test, 0),
        ("client_concurrency", client_concurrency, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            fail(f"run_generation.{name} must be an integer >= {least}, got {value!r}")
    if not request_timeout_s > 0:
        fail(f"run_generation.request_timeout_s must be > 0, got {request_timeout_s!r}")
    if FLAGS.backend == "reference" and reference_num_train + reference_num_test == 0:
        fail(
            "run_generation.reference_num_train and reference_num_test are both 0: nothing to "
            "generate"
        )
    try:
        domain = domains.load(FLAGS.domain, **(domain_kwargs or {}))
    except (ValueError, ImportError) as e:
        fail(str(e))
    synthesis_config = synthesis_config or SynthesisConfig()
    reference = (
        {"reference_num_train": reference_num_train, "reference_num_test": reference_num_test}
        if FLAGS.backend == "reference"
        else {}
    )
    _claim_output(out, run_config(synthesis_config, domain_kwargs=domain_kwargs or {}, **reference))
    if FLAGS.backend == "reference":
        if FLAGS.num_workers != 1:
            fail("--backend=reference runs as a single worker (it is fast); drop --num_workers")
        from data_agents.journal import iter_records
        from data_agents.reference_backend import generate_reference
        from data_agents.report import summarize_round, write_report

        journal = out / "journals" / "reference.jsonl"
        bar = Progress(reference_num_train + reference_num_test, enabled=FLAGS.progress)
        try:
            counts = generate_reference(
                FLAGS.domain,
                journal,
                {"train": reference_num_train, "test": reference_num_test},
                on_record=bar,
                **(domain_kwargs or {}),
            )
        except ValueError as e:
            fail(str(e))
        finally:
            bar.close()
        summary = write_report(
            out,
            [summarize_round(iter_records(journal), 0)],
            domain=FLAGS.domain,
            backend="reference",
            counts=counts,
        )
    else:
        _require_checker_sandbox()
        summary = asyncio.run(
            _llm_run(
                domain,
                synthesis_config,
                out,
                client_concurrency,
                request_timeout_s,
                use_response_cache,
            )
        )
    if FLAGS.publish:  # a new dataset version whenever the journals changed since the last one
        from data_agents import run_dir
        from data_agents.tfds import build_dataset

        try:
            run_dir.hold_lock(out, "publish")
        except run_dir.OutputInUse as e:
            fail(str(e))
        data_dir = FLAGS.data_dir or str(out / "tfds")
        builder = build_dataset(out / "journals", data_dir)
        summary["published"] = {
            "data_dir": data_dir,
            "version": str(builder.version),
            "splits": {k: v.num_examples for k, v in builder.info.splits.items()},
        }
    return summary


def _check_flags(argv) -> None:
    """Bad flags end the run with one line before anything is read or written."""
    from urllib.parse import urlparse

    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]} (flags only)")
    if not FLAGS.workdir:
        fail("--workdir is required")
    if not 0 <= FLAGS.worker_index < FLAGS.num_workers:
        fail(f"--worker_index must be in [0, {FLAGS.num_workers}), got {FLAGS.worker_index}")
    for url in FLAGS.server_url:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            fail(f"--server_url {url!r} is not an http(s) URL (e.g. http://127.0.0.1:30000)")
    for name in ("workdir", "data_dir"):
        path = getattr(FLAGS, name)
        if path and Path(path).exists() and not Path(path).is_dir():
            fail(f"--{name} {path!r} exists and is not a directory")


def main(argv) -> None:
    _check_flags(argv)
    if missing := common.missing_gin_file():
        fail(missing)
    for path in common.gin_search_paths():
        gin.add_config_file_search_path(path)
    try:
        gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_bindings)
        SynthesisConfig()  # its bindings are checked whichever backend runs
    except (ValueError, OSError, KeyError, NameError) as e:
        fail(f"gin configuration error: {str(e).splitlines()[0]}")
    try:
        summary = run_generation()
    except (ValueError, OSError) as e:  # e.g. an output folder that cannot be created
        logging.debug("traceback of the error below", exc_info=True)  # shown with -v 1
        fail(f"{type(e).__name__}: {str(e).splitlines()[0]}")
    keys = ("total", "accepted", "acceptance_rate", "published", "worker_counts")
    print({k: summary[k] for k in keys if k in summary})


def run() -> None:
    """The `eigen-data` console script (setup.py) and `python -m launch.generate_data`."""
    app.run(main)


if __name__ == "__main__":
    run()
