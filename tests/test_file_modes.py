"""Saved outputs get the modes of any new file under the umask: a group sharing a project folder can read them."""
import os
import stat
from pathlib import Path

import pyarrow as pa
import pytest

from synergy.io import atomic_path, current_umask, share_tree, write_parquet, write_text


@pytest.fixture
def umask():
    """Set a umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_current_umask_is_read_without_changing_it(umask):
    umask(0o027)
    assert current_umask() == 0o027 and current_umask() == 0o027


@pytest.mark.parametrize("mask, file_mode", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_atomic_outputs_follow_the_umask(tmp_path, umask, mask, file_mode):
    umask(mask)
    write_parquet(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
    write_text("x", tmp_path / "t.md")
    with atomic_path(tmp_path / "raw.bin") as tmp:
        tmp.write_bytes(b"123")
    assert [_mode(tmp_path / n) for n in ("t.parquet", "t.md", "raw.bin")] == [file_mode] * 3


def test_a_saved_model_folder_is_group_readable_under_umask_002(tmp_path, umask, tiny_loaded):
    from synergy.models import save_model

    umask(0o002)
    model, processor = tiny_loaded
    save_model(model, processor, tmp_path / "m", extra_files={"training_summary.json": "{}"})
    files = [p for p in (tmp_path / "m").rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files) and len(files) >= 4
    assert {_mode(p) for p in files} == {0o664}, {p.name: oct(_mode(p)) for p in files}
    assert _mode(tmp_path / "m") == 0o775
    umask(0o077)  # a private umask keeps a saved model private
    save_model(model, processor, tmp_path / "p")
    assert {_mode(p) for p in (tmp_path / "p").rglob("*") if p.is_file()} == {0o600}


def test_share_tree_sets_files_and_folders(tmp_path, umask):
    umask(0o002)
    (tmp_path / "d/e").mkdir(parents=True)
    f = tmp_path / "d/e/w.bin"
    f.write_bytes(b"1")
    os.chmod(f, 0o600)
    os.chmod(tmp_path / "d/e", 0o700)
    share_tree(tmp_path / "d")
    assert _mode(f) == 0o664 and _mode(tmp_path / "d/e") == 0o775
