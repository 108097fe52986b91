"""Seed 001's task: an image, a review and a sound per row, and a multi-label target with one tag per modality.

The tags say which shape the image shows (circle / square), whether the chirp rises or falls (rising / falling)
and the review's sentiment (positive / negative), joined with "|" (e.g. "circle|falling|positive"): every modality
decides one tag, so a model needs all three, and the output is a sigmoid per tag.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from .synthetic import SAMPLE_RATE, _chirp, _image, _review

TAGS = (("circle", "square"), ("rising", "falling"), ("positive", "negative"))


def generate_tagged(out_dir: str | Path, n: int, seed: int = 0, prefix: str = "") -> pd.DataFrame:
    """Write ``n`` rows' images and sounds under ``out_dir`` and return the table (image, audio, text, tags)."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        circle, rising, positive = (bool(b) for b in rng.integers(0, 2, 3))
        image, audio = f"images/{prefix}{i:05d}.png", f"audio/{prefix}{i:05d}.wav"
        _image(rng, circle).save(out / image)
        sf.write(out / audio, _chirp(rng, rising), SAMPLE_RATE, subtype="PCM_16")
        tags = [pair[0] if on else pair[1] for pair, on in zip(TAGS, (circle, rising, positive), strict=True)]
        rows.append({"image": image, "audio": audio, "text": _review(rng, positive), "tags": "|".join(tags)})
    return pd.DataFrame(rows)
