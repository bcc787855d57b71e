"""Run-folder paths: URLs stay URLs (the bug was `Path('gs://b/run').absolute()` → `./gs:/b/run`),
local paths become absolute, and a tree copies between folders through epath."""

import os

from eigen_jax import paths


def test_urls_are_not_mangled_and_local_paths_are_absolute(tmp_path, monkeypatch):
    for url in ("gs://bucket/run", "s3://bucket/a/b"):
        assert str(paths.resolve(url)) == url and paths.is_url(url)
        assert str(paths.resolve(url) / "checkpoints") == url + "/checkpoints"
    monkeypatch.chdir(tmp_path)
    assert str(paths.resolve("run")) == os.path.join(str(tmp_path), "run")
    assert not paths.is_url("run")


def test_copy_tree_and_local_staging(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.json").write_text("{}")
    (src / "sub" / "b.bin").write_bytes(b"\x00\x01")
    paths.copy_tree(src, tmp_path / "dst")
    assert (tmp_path / "dst" / "a.json").read_text() == "{}"
    assert (tmp_path / "dst" / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    with paths.local_staging(tmp_path / "local") as d:  # a local destination is used directly
        assert d == str(tmp_path / "local") and os.path.isdir(d)
