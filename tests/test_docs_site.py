"""`make docs` (issue 25, acceptance 5): the MkDocs site with its API reference builds in strict mode, so a broken
link, a missing page or a docstring that does not match its signature fails here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO_ROOT

pytest.importorskip("mkdocs", reason="the docs extra (mkdocs) is not installed")
pytest.importorskip("mkdocstrings", reason="the docs extra (mkdocstrings) is not installed")
pytest.importorskip("material", reason="the docs extra (mkdocs-material) is not installed")


def test_every_docs_page_is_in_the_site_nav():
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from pages(value) if isinstance(value, list) else [value]

    listed = set(pages(config["nav"]))
    on_disk = {p.relative_to(REPO_ROOT / "docs").as_posix() for p in (REPO_ROOT / "docs").rglob("*.md")}
    assert on_disk == listed, f"pages not in mkdocs.yml nav: {sorted(on_disk - listed)}; missing: {listed - on_disk}"


def test_mkdocs_builds_in_strict_mode_without_warnings(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert "WARNING" not in r.stderr, r.stderr[-4000:]
    # the API reference is generated from the docstrings
    page = (tmp_path / "site" / "api" / "predictor" / "index.html").read_text(encoding="utf-8")
    assert "polymodal.api.Predictor.fit" in page and "polymodal.api.Predictor.evaluate" in page
