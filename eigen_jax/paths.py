"""File paths that may be URLs: every run folder goes through `etils.epath`, so `gs://bucket/run`
is a bucket prefix, not a local folder named `gs:`.

Local paths are made absolute (orbax wants absolute paths; a relative one would move with the
working directory); URLs are left as they are.
"""
from __future__ import annotations

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
def local_staging(dst: str | os.PathLike, prefix: str = "stage") -> Iterator[str]:
    """A local folder to write into for libraries that only write local files (safetensors,
    tokenizers): `dst` itself when local, else a temporary folder copied to `dst` on exit (by
    the process that wrote it; an empty one copies nothing)."""
    if not is_url(dst):
        os.makedirs(os.fspath(resolve(dst)), exist_ok=True)
        yield os.fspath(resolve(dst))
        return
    tmp = tempfile.mkdtemp(prefix=f"eigen_jax_{prefix}_")
    try:
        yield tmp
        if os.listdir(tmp):
            copy_tree(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
