"""Atomic writes: a failure leaves neither the target nor a temp sibling; success replaces the target whole."""

from __future__ import annotations

import pytest

from polymodal.errors import RunDirError
from polymodal.io import atomic_dir, atomic_file


def test_atomic_file_success_and_failure(tmp_path):
    target = tmp_path / "out.csv"
    with atomic_file(target, "w") as f:
        f.write("a,b\n")
    assert target.read_text() == "a,b\n"
    with pytest.raises(RuntimeError), atomic_file(target, "w") as f:
        f.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "a,b\n"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    target = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_overwrite(tmp_path):
    target = tmp_path / "run"
    with atomic_dir(target) as tmp:
        (tmp / "a.json").write_text("1")
    with pytest.raises(RunDirError, match="already exists"), atomic_dir(target):
        pass
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "b.json").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
