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
    pytest.mark.skipif(
        SHARED is None,
        reason="shared data not found at ../shared/data or /work/shared/data (only present on the project's machines)",
    ),
]


def test_avdigits_builder_is_present_and_parses():
    build = SHARED / "avdigits" / "build.py"
    assert build.is_file(), f"AV-digits builder missing: {build}"
    tree = ast.parse(build.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    assert "manifest.csv" in doc and "id,image,audio,label,split" in doc
    assert (SHARED / "mnist").is_dir() and (SHARED / "fsdd").is_dir(), "AV-digits sources (mnist, fsdd) missing"


def test_tiny_fit_on_real_spoken_digits_and_mnist(tmp_path):
    """Real files: 8 kHz FSDD recordings of varying length and MNIST digits as PNG, 60 rows, tiny model."""
    import csv

    import numpy as np
    import pandas as pd
    from conftest import tiny_config
    from PIL import Image

    from polymodal import Predictor

    mnist = np.load(SHARED / "mnist" / "mnist_test.npz")
    clips = {}
    with open(SHARED / "fsdd" / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            clips.setdefault(int(r["digit"]), []).append(SHARED / "fsdd" / r["path"])
    rows = []
    for i in range(60):
        digit = int(mnist["labels"][i])
        Image.fromarray(mnist["images"][i]).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "audio": str(clips[digit][i % len(clips[digit])]), "label": digit % 2})
    # Paths outside the data root (the images' absolute ones here) are refused when confined to the root; a
    # symlink placed inside the root is followed.
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    confined = tiny_config()
    confined["limits"] = {"confine_to_root": True}
    p = Predictor("label", config=confined, data_root=SHARED, verbose=False)
    frame = pd.DataFrame(rows)
    frame["image"] = [str(tmp_path / f) for f in frame["image"]]
    with pytest.raises(Exception, match="outside the data root"):
        p.fit(frame)
    link = tmp_path / "fsdd"
    link.symlink_to(SHARED / "fsdd")
    frame = pd.DataFrame(rows)
    frame["audio"] = [str(Path("fsdd") / Path(a).relative_to(SHARED / "fsdd")) for a in frame["audio"]]
    p = Predictor("label", config=confined, data_root=tmp_path, verbose=False).fit(frame)
    assert p.processors["audio"].sample_rate == 8000 and p.processors["image"].channels == 1
    proba = p.predict_proba(frame)
    assert proba.shape == (60, 2) and np.isfinite(proba.to_numpy()).all()
