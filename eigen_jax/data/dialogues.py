"""Reading the project's TFDS dialogue datasets (the `eigen_dialogues` contract) without TensorFlow.

The dataset's features keep nested structure as JSON text (see data_agents' builder); this is the
consumer side of that contract. Reading goes through `tfds.data_source`, which needs only the
prepared array_record files (the builder class need not be importable here).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from typing import Any

import tensorflow_datasets as tfds

from eigen_jax import paths


def _text(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def decode_example(ex: dict[str, Any]) -> dict[str, Any]:
    """One TFDS example → a dialogue dict: messages, task, tools, policy, verdict, provenance."""
    msgs = ex["messages"]
    messages = []
    for role, content, calls, call_id in zip(
        msgs["role"], msgs["content"], msgs["tool_calls_json"], msgs["tool_call_id"]
    ):
        m: dict[str, Any] = {"role": _text(role), "content": _text(content)}
        calls = json.loads(_text(calls))
        if calls:
            m["tool_calls"] = calls
        if _text(call_id):
            m["tool_call_id"] = _text(call_id)
        messages.append(m)
    return {
        "key": _text(ex["key"]),
        "domain": _text(ex["domain"]),
        "task_id": _text(ex["task_id"]),
        "task": json.loads(_text(ex["task_json"])),
        "tools": json.loads(_text(ex["tools_json"])),
        "user_tools": json.loads(_text(ex["user_tools_json"])),
        "policy": _text(ex["policy"]),
        "messages": messages,
        "checker_source": _text(ex["checker_source"]) or None,
        "verdict": json.loads(_text(ex["verdict_json"])),
        "reward": float(ex["reward"]),
        "round": int(ex["round"]),
        "provenance": json.loads(_text(ex["provenance_json"])),
    }


def newest_version(data_dir: str, name: str) -> str:
    """`name` pinned to the newest version prepared under `data_dir`, unless it names one.

    Why: republishing changed journals adds a version beside the old ones; unpinned, tfds would
    read the version of the builder's code whenever that code is imported (e.g. in the process
    that just published), i.e. the first publish, not the newest.
    """
    if ":" in name:
        return name
    base, _, config = name.partition("/")
    root = paths.resolve(data_dir) / base / (config or "default")
    versions = [
        tfds.core.Version(p.name)
        for p in root.glob("*")
        if tfds.core.Version.is_valid(p.name) and (p / "dataset_info.json").exists()
    ]
    if not versions:
        return name
    return f"{base}/{config or 'default'}:{max(versions)}"


def dialogue_source(data_dir: str, split: str = "train", name: str = "eigen_dialogues"):
    """Random-access source of raw examples (array_record) of a prepared dataset (its newest
    version unless `name` pins one, e.g. "eigen_dialogues/default:1.0.0")."""
    name = newest_version(data_dir, name)
    if paths.is_url(data_dir):
        data_dir = _local_version(data_dir, name)
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir)
    except Exception as e:  # tfds raises a zoo of types for a missing dataset or split
        raise FileNotFoundError(
            f"cannot open TFDS dataset {name!r} split {split!r} under {data_dir}: {e}"
        ) from e


@functools.cache
def _local_version(data_dir: str, name: str) -> str:
    """A local data_dir holding the prepared version `name` ("base/config:version") copied from
    the URL `data_dir`: array_record's reader opens local files only. Cached per process: a
    prepared version never changes (a republish adds the next version)."""
    if ":" not in name:
        raise FileNotFoundError(f"no prepared version of {name!r} under {data_dir}")
    base_config, _, version = name.partition(":")
    base, _, config = base_config.partition("/")
    rel = f"{base}/{config or 'default'}/{version}"
    root = tempfile.mkdtemp(prefix="eigen_jax_tfds_")
    atexit.register(shutil.rmtree, root, True)
    paths.copy_tree(paths.resolve(data_dir) / rel, os.path.join(root, rel))
    return root
