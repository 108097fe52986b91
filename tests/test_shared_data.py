"""Checks on the shared data sets (../shared/data beside the repo, or /work/shared/data); skipped when absent."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO_ROOT

CANDIDATES = [REPO_ROOT.parent / "shared" / "data", Path("/work/shared/data")]
SHARED = next((p for p in CANDIDATES if p.is_dir()), None)

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(SHARED is None, reason="shared data not found at ../shared/data or /work/shared/data "
                                              "(only present on the project's machines)"),
]


def test_avdigits_builder_is_present_and_parses():
    build = SHARED / "avdigits" / "build.py"
    assert build.is_file(), f"AV-digits builder missing: {build}"
    tree = ast.parse(build.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    assert "manifest.csv" in doc and "id,image,audio,label,split" in doc
    assert (SHARED / "mnist").is_dir() and (SHARED / "fsdd").is_dir(), "AV-digits sources (mnist, fsdd) missing"
