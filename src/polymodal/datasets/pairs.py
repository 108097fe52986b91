"""Paired scenes for cross-modal retrieval: an image and the caption that pins it down (issue 23).

Each scene (1-3 coloured shapes in a 3x3 grid, drawn by :mod:`polymodal.datasets.scenes`) is distinct from every
other scene of the data set, training and test together, so each caption identifies exactly one image: the i-th
caption's right answer is the i-th image, and only it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .scenes import Scene, _pairs, _write_csv, generate_captioning, sample_scenes, signature


@dataclass
class PairPaths:
    root: Path
    train: Path
    test: Path


def distinct_scenes(n: int, rng: np.random.Generator) -> list[Scene]:
    """``n`` scenes, no two with the same set of (colour, shape, position) objects."""
    seen: set = set()
    out: list[Scene] = []
    pairs = _pairs()
    while len(out) < n:
        (scene,) = sample_scenes(1, rng, pairs, avoid=seen)
        seen.add(signature(scene))
        out.append(scene)
    return out


def pair_frame(out_dir: str | Path, n: int, seed: int = 0, prefix: str = "") -> pd.DataFrame:
    """``n`` distinct scenes rendered under ``out_dir/images``: columns caption, image."""
    scenes = distinct_scenes(n, np.random.default_rng(seed))
    return generate_captioning(out_dir, scenes, seed=seed, prefix=prefix)[["caption", "image"]]


def make_pairs(out_dir: str | Path, n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> PairPaths:
    """train.csv and test.csv (columns caption, image), every scene distinct across both."""
    out = Path(out_dir)
    frame = pair_frame(out, n_train + n_test, seed, prefix="pair_")
    paths = PairPaths(out, out / "train.csv", out / "test.csv")
    _write_csv(frame.iloc[:n_train], paths.train)
    _write_csv(frame.iloc[n_train:].reset_index(drop=True), paths.test)
    return paths
