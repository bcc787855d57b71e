"""File paths that may be URLs: every run folder goes through `etils.epath`, so `gs://bucket/run`
is a bucket prefix, not a local folder named `gs:`.

Local paths are made absolute (orbax wants absolute paths; a relative one would move with the
working directory); URLs are left as they are.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from etils import epath


def is_url(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def resolve(path: str | os.PathLike) -> epath.Path:
    """An `epath.Path`; local ones absolute (never `Path(url).absolute()`, which mangles a URL)."""
    text = os.fspath(path)
    return epath.Path(text) if is_url(text) else epath.Path(os.path.abspath(text))


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy every file under `src` to `dst` (either side on any epath scheme)."""
    src, dst = resolve(src), resolve(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_dir():
            copy_tree(f, dst / f.name)
        else:
            (dst / f.name).write_bytes(f.read_bytes())


@contextlib.contextmanager
def local_staging(
    dst: str | os.PathLike, prefix: str = "stage", pull: bool = False
) -> Iterator[str]:
    """A local folder to write into for libraries that only write local files (safetensors,
    tokenizers, the data stage's journal and TFDS build): `dst` itself when local, else a
    temporary folder copied to `dst` on exit (by the process that wrote it; an empty one copies
    nothing). `pull=True` first copies what `dst` already holds, so a resumed writer (a journal
    that skips the keys it has) sees its earlier output."""
    if not is_url(dst):
        os.makedirs(os.fspath(resolve(dst)), exist_ok=True)
        yield os.fspath(resolve(dst))
        return
    tmp = tempfile.mkdtemp(prefix=f"eigen_jax_{prefix}_")
    try:
        if pull and resolve(dst).is_dir():
            copy_tree(dst, tmp)
        yield tmp
        if os.listdir(tmp):
            copy_tree(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def local_dir(path: str | os.PathLike, prefix: str = "download") -> str:
    """A local folder holding `path`'s files, for libraries that only read local files
    (transformers' tokenizer, safetensors): `path` itself when local, else a fresh download into
    a temporary folder removed when the process exits (fresh, so a re-exported folder is never
    read stale)."""
    if not is_url(path):
        return os.fspath(resolve(path))
    if not resolve(path).is_dir():
        raise FileNotFoundError(f"directory {os.fspath(path)!r} does not exist")
    tmp = tempfile.mkdtemp(prefix=f"eigen_jax_{prefix}_")
    atexit.register(shutil.rmtree, tmp, True)
    copy_tree(path, tmp)
    return tmp


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append `text` to the file at `path`. An object store has no append (its "a" mode replaces
    the object), so there the old contents are rewritten with the new."""
    path = resolve(path)
    if not is_url(path):
        with path.open("a") as f:
            f.write(text)
        return
    path.write_text((path.read_text() if path.exists() else "") + text)
