"""The demo generator: deterministic, and its label is the documented function of the five factors."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

from polymodal.datasets.synthetic import (
    LABELS,
    SAMPLE_RATE,
    SECONDS,
    generate,
    make_demo,
)


def _digest(root, frame: pd.DataFrame) -> str:
    h = hashlib.sha256(frame.to_csv(index=False).encode())
    for col in ("image", "audio"):
        for rel in frame[col].dropna():
            h.update((root / rel).read_bytes())
    return h.hexdigest()


def test_generator_is_deterministic(tmp_path):
    a = generate(tmp_path / "a", 12, seed=3)
    b = generate(tmp_path / "b", 12, seed=3)
    assert _digest(tmp_path / "a", a) == _digest(tmp_path / "b", b)
    c = generate(tmp_path / "c", 12, seed=4)
    assert _digest(tmp_path / "c", c) != _digest(tmp_path / "a", a)


def test_files_and_columns(tmp_path):
    frame = generate(tmp_path, 30, seed=0, missing_rate=0.0)
    assert list(frame.columns) == ["image", "audio", "text", "reading", "region", "label"]
    im = Image.open(tmp_path / frame["image"][0])
    assert im.size == (32, 32) and im.mode == "RGB"
    wav, sr = sf.read(tmp_path / frame["audio"][0])
    assert sr == SAMPLE_RATE and len(wav) == int(SAMPLE_RATE * SECONDS)
    assert set(frame["label"]) <= {"low", "medium", "high"}
    assert set(frame["region"]) <= {"north", "east", "south", "west"}


def test_label_counts_the_yes_factors(tmp_path):
    """Recover region and reading factors from the table; the label must be consistent with them."""
    frame = generate(tmp_path, 300, seed=1, missing_rate=0.0)
    known = frame["region"].isin(["north", "east"]).astype(int) + (frame["reading"] > 0).astype(int)
    rank = frame["label"].map({"low": 0, "medium": 1, "high": 2})
    # Two known factors = 2 "yes" at least -> never low unless a reading landed on the wrong side of 0 (rare).
    assert (rank[known == 2] >= 1).mean() > 0.97
    assert (rank[known == 0] <= 1).mean() > 0.97
    assert LABELS == ["low", "low", "medium", "medium", "high", "high"]
    # Every label value occurs, medium most often (10/16 of rows in expectation).
    shares = frame["label"].value_counts(normalize=True)
    assert 0.5 < shares["medium"] < 0.75 and shares["low"] > 0.08 and shares["high"] > 0.08


def test_missing_cells_are_left_empty(tmp_path):
    frame = generate(tmp_path, 200, seed=2, missing_rate=0.1)
    for col in ("image", "audio", "text", "reading"):
        assert 0 < frame[col].isna().sum() < 60


def test_make_demo_writes_disjoint_train_and_test(tmp_path):
    paths = make_demo(tmp_path, n_train=20, n_test=10, seed=0)
    train, test = pd.read_csv(paths.train), pd.read_csv(paths.test)
    assert len(train) == 20 and len(test) == 10
    assert not set(train["image"].dropna()) & set(test["image"].dropna())
    assert np.all([(tmp_path / p).is_file() for p in train["image"].dropna()])
