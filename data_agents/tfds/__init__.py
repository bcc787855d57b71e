"""TFDS publishing of generation journals; see `eigen_dialogues`.

Why versions: TFDS never rebuilds a version that is already prepared, so republishing grown or
resumed journals under the builder's fixed version would silently keep serving the old data. Each
publish therefore records a digest of the journals (`<data_dir>/eigen_dialogues.publish.json`);
when they have changed since the last publish, the dataset is built again as the next patch
version (1.0.0, 1.0.1, ...), and unchanged journals reuse the published version. Readers that do
not name a version get the newest one (`eigen_jax.data.dialogues.dialogue_source`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import tensorflow_datasets as tfds

NAME = "eigen_dialogues"


def journals_digest(journal_dir: str | Path) -> str:
    """SHA-256 over every journal's path and complete lines (a torn tail is not yet a record)."""
    root = Path(journal_dir)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.jsonl")):
        data = path.read_bytes()
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(data[: data.rfind(b"\n") + 1] + b"\0")
    return h.hexdigest()


def published_versions(data_dir: str | Path, config: str = "default") -> list[tfds.core.Version]:
    """Versions prepared on disk (those with a dataset_info.json), oldest first."""
    root = Path(data_dir) / NAME / config
    found = [p.name for p in root.glob("*") if (p / "dataset_info.json").exists()]
    return sorted(tfds.core.Version(v) for v in found if tfds.core.Version.is_valid(v))


def _builder_class(version: tfds.core.Version):
    """The dataset builder at `version` (a subclass, so the registered builder is untouched)."""
    from data_agents.tfds.eigen_dialogues import Builder

    if version == Builder.VERSION:
        return Builder
    notes = {**Builder.RELEASE_NOTES, str(version): "Republished: the journals changed."}
    return type(
        "Builder",
        (Builder,),
        {"VERSION": version, "RELEASE_NOTES": notes, "__module__": Builder.__module__},
        skip_registration=True,
    )


def build_dataset(journal_dir: str | Path, data_dir: str | Path, config: str = "default"):
    """Publish the accepted records of every journal under `journal_dir` as array_record shards.

    Builds a new version when the journals changed since the last publish into `data_dir`, else
    returns the published one. Returns the prepared builder (`builder.as_data_source()` reads it).
    """
    from data_agents.tfds.eigen_dialogues import Builder

    digest = journals_digest(journal_dir)
    state_path = Path(data_dir) / f"{NAME}.publish.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    last = state.get(config, {})
    on_disk = published_versions(data_dir, config)
    if last.get("journals_digest") == digest and tfds.core.Version(last["version"]) in on_disk:
        version = tfds.core.Version(last["version"])
    elif on_disk:
        newest = on_disk[-1]
        version = tfds.core.Version(f"{newest.major}.{newest.minor}.{newest.patch + 1}")
    else:
        version = Builder.VERSION
    builder = _builder_class(version)(
        config=config, data_dir=str(data_dir), file_format="array_record"
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(journal_dir))
    )
    state[config] = {"journals_digest": digest, "version": str(version)}
    tmp = state_path.with_name(f".{state_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, state_path)  # recorded only once the version is fully prepared
    return builder
