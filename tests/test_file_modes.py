"""Written files honour the umask: the final files and folders get the mode a plain open() / mkdir() would, not the
private 0600 / 0700 of the temp siblings that atomic writes start from."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from polymodal.errors import PolymodalError
from polymodal.io import atomic_dir, atomic_file, umask, write_files


@pytest.fixture
def umask_022():
    """Run the test under umask 022 (the common default), restoring the caller's afterwards."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_shared(path: Path) -> None:
    """``path`` is 0644 (a file) or 0755 (a folder, and everything under it)."""
    if path.is_file():
        assert mode(path) == 0o644, f"{path} is {oct(mode(path))}"
        return
    assert mode(path) == 0o755, f"{path} is {oct(mode(path))}"
    for p in path.rglob("*"):
        assert mode(p) == (0o755 if p.is_dir() else 0o644), f"{p} is {oct(mode(p))}"


def test_umask_is_read_without_changing_it(umask_022):
    assert umask() == 0o022
    assert umask() == 0o022


def test_atomic_writes_get_the_umask_mode(umask_022, tmp_path):
    with atomic_file(tmp_path / "a.csv") as f:
        f.write("x")
    assert_shared(tmp_path / "a.csv")
    with atomic_dir(tmp_path / "run") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.json").write_text("1")
    assert_shared(tmp_path / "run")
    write_files(tmp_path / "new", {"c.txt": b"c"}, PolymodalError)
    write_files(tmp_path / "new", {"d.txt": b"d"}, PolymodalError)  # into an existing folder, file by file
    assert_shared(tmp_path / "new")


def test_replacing_a_file_keeps_its_mode(umask_022, tmp_path):
    target = tmp_path / "private.csv"
    target.write_text("old")
    target.chmod(0o600)
    with atomic_file(target) as f:
        f.write("new")
    assert mode(target) == 0o600 and target.read_text() == "new"


def test_saved_run_predictions_report_and_export(umask_022, cli, fitted, run_dir, test_csv, tmp_path):
    from polymodal.export.export import ExportConfig, export_run
    from polymodal.reporting import report

    assert_shared(fitted.save(tmp_path / "run"))
    r = cli("predict", run_dir, test_csv, "--out", tmp_path / "preds.csv", "--quiet")
    assert r.exit_code == 0, r.stderr
    assert_shared(tmp_path / "preds.csv")
    assert_shared(report(run_dir, test_csv, tmp_path / "r.html", n_examples=0, n_bootstrap=0))
    export_run(run_dir, tmp_path / "ts", ExportConfig(format="torchscript"))
    assert_shared(tmp_path / "ts")


def test_feature_cache_files(umask_022, tmp_path):
    import torch

    from polymodal.features.cache import FeatureCache

    FeatureCache(tmp_path / "cache").put("m", "abcd", {"x": torch.zeros(2)}, meta={"model": "m"})
    assert_shared(tmp_path / "cache")
