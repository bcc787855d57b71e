"""Reading the project's TFDS dialogue datasets (the `eigen_dialogues` contract) without TensorFlow.

The dataset's features keep nested structure as JSON text (see data_agents' builder); this is the
consumer side of that contract. Reading goes through `tfds.data_source`, which needs only the
prepared array_record files (the builder class need not be importable here).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds


def _text(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def decode_example(ex: dict[str, Any]) -> dict[str, Any]:
    """One TFDS example → a dialogue dict: messages, task, tools, policy, verdict, provenance."""
    msgs = ex["messages"]
    messages = []
    for role, content, calls, call_id in zip(msgs["role"], msgs["content"],
                                             msgs["tool_calls_json"], msgs["tool_call_id"]):
        m: dict[str, Any] = {"role": _text(role), "content": _text(content)}
        calls = json.loads(_text(calls))
        if calls:
            m["tool_calls"] = calls
        if _text(call_id):
            m["tool_call_id"] = _text(call_id)
        messages.append(m)
    return {
        "key": _text(ex["key"]), "domain": _text(ex["domain"]), "task_id": _text(ex["task_id"]),
        "task": json.loads(_text(ex["task_json"])), "tools": json.loads(_text(ex["tools_json"])),
        "user_tools": json.loads(_text(ex["user_tools_json"])), "policy": _text(ex["policy"]),
        "messages": messages, "checker_source": _text(ex["checker_source"]) or None,
        "verdict": json.loads(_text(ex["verdict_json"])), "reward": float(ex["reward"]),
        "round": int(ex["round"]), "provenance": json.loads(_text(ex["provenance_json"])),
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
    root = Path(data_dir) / base / (config or "default")
    versions = [tfds.core.Version(p.name) for p in root.glob("*")
                if tfds.core.Version.is_valid(p.name) and (p / "dataset_info.json").exists()]
    if not versions:
        return name
    return f"{base}/{config or 'default'}:{max(versions)}"


def dialogue_source(data_dir: str, split: str = "train", name: str = "eigen_dialogues"):
    """Random-access source of raw examples (array_record) of a prepared dataset (its newest
    version unless `name` pins one, e.g. "eigen_dialogues/default:1.0.0")."""
    try:
        return tfds.data_source(newest_version(data_dir, name), split=split, data_dir=data_dir)
    except Exception as e:  # tfds raises a zoo of types for a missing dataset or split
        raise FileNotFoundError(f"cannot open TFDS dataset {name!r} split {split!r} under "
                                f"{data_dir}: {e}") from e
