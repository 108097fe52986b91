"""Deterministic synthetic multimodal data for the demo and the tests.

Each row hides five independent yes/no factors, one per column:

    image   the shape is a circle (yes) or a square (no); colour, size and position are random
    audio   the chirp rises (yes) or falls (no); start pitch, loudness and noise are random
    text    the review uses a positive (yes) or a negative (no) adjective among filler words
    reading the number is drawn around +1 (yes) or -1 (no), so a few land on the wrong side of 0
    region  north/east (yes) or south/west (no)

``label`` counts the "yes" factors: ``low`` (0-1), ``medium`` (2-3) or ``high`` (4-5). Every factor moves the label,
so each encoder gets a learning signal, but with five fair, independent factors knowing any single column
predicts the label at best 10/16 = 0.625 of the time (the tabular pair together: also 0.625, the share of
``medium``), while all of them together decide it. A small share of cells is left empty to exercise
missing-modality handling (those rows, and the few readings that land on the wrong side of 0, keep the best
possible accuracy just under 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image, ImageDraw

from ..io import atomic_file

COLOURS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 160, 20), (150, 60, 190), (20, 170, 170)]
POSITIVE = ["excellent", "great", "lovely", "superb", "wonderful", "perfect"]
NEGATIVE = ["awful", "broken", "poor", "terrible", "dreadful", "useless"]
ITEMS = ["parcel", "order", "package", "delivery", "device", "lamp", "chair", "kettle"]
OPENERS = ["honestly", "well", "so", "in short", "to be fair", "overall", "frankly", "all in all"]
CLOSERS = ["this week", "after two days", "as expected", "on monday", "yesterday", "at last", "again", "today"]
REGIONS_YES, REGIONS_NO = ["north", "east"], ["south", "west"]
IMAGE_SIZE, SAMPLE_RATE, SECONDS = 32, 8000, 0.5
LABELS = ["low", "low", "medium", "medium", "high", "high"]  # indexed by the number of "yes" factors


@dataclass
class DemoPaths:
    root: Path
    train: Path
    test: Path


def _image(rng: np.random.Generator, circle: bool) -> Image.Image:
    return _image_and_box(rng, circle)[0]


def _image_and_box(rng: np.random.Generator, circle: bool) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The image and the shape's bounding box (x0, y0, x1, y1) in its pixels, inclusive."""
    bg = int(rng.integers(200, 256))
    arr = np.clip(bg + rng.normal(0, 8, (IMAGE_SIZE, IMAGE_SIZE, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(im)
    r = int(rng.integers(7, 13))
    cx, cy = (int(v) for v in rng.integers(r + 1, IMAGE_SIZE - r - 1, 2))
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    box = (cx - r, cy - r, cx + r, cy + r)
    (draw.ellipse if circle else draw.rectangle)(box, fill=colour)
    return im, box


def _chirp(rng: np.random.Generator, rising: bool) -> np.ndarray:
    t = np.arange(int(SAMPLE_RATE * SECONDS)) / SAMPLE_RATE
    low = rng.uniform(300, 800)
    high = low * rng.uniform(2.0, 3.0)
    f0, f1 = (low, high) if rising else (high, low)
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * SECONDS))
    envelope = np.minimum(1, np.minimum(t, SECONDS - t) / 0.02)
    wave = rng.uniform(0.3, 0.8) * envelope * np.sin(phase) + rng.normal(0, 0.03, len(t))
    return np.clip(wave, -1, 1).astype(np.float32)


def _review(rng: np.random.Generator, positive: bool) -> str:
    adj = rng.choice(POSITIVE if positive else NEGATIVE)
    return f"{rng.choice(OPENERS)} the {rng.choice(ITEMS)} was {adj} {rng.choice(CLOSERS)}"


def generate(
    out_dir: str | Path, n: int, seed: int = 0, prefix: str = "", missing_rate: float = 0.01, distractor: bool = False
) -> pd.DataFrame:
    """Write ``n`` rows of files under ``out_dir`` and return their table (paths relative to ``out_dir``).

    ``distractor=True`` adds a numeric column ``noise`` (standard normal, empty in ``missing_rate`` of the rows like
    the other columns) that the label does not depend on, as a known-useless input for checking explanations and
    modality importance. It is drawn from its own random stream, so every other column is the same with or
    without it.
    """
    out = Path(out_dir)
    noise_rng = np.random.default_rng([seed, 1])
    noise = noise_rng.normal(0.0, 1.0, n) if distractor else None
    noise_missing = noise_rng.random(n) < missing_rate if distractor else None
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        bits = rng.integers(0, 2, 5).astype(bool)
        name = f"{prefix}{i:05d}"
        image_path, audio_path = f"images/{name}.png", f"audio/{name}.wav"
        _image(rng, bits[0]).save(out / image_path)
        sf.write(out / audio_path, _chirp(rng, bits[1]), SAMPLE_RATE, subtype="PCM_16")
        reading = rng.normal(1.0 if bits[3] else -1.0, 0.4)
        region = rng.choice(REGIONS_YES if bits[4] else REGIONS_NO)
        row = {
            "image": image_path,
            "audio": audio_path,
            "text": _review(rng, bits[2]),
            "reading": round(float(reading), 3),
            "region": str(region),
            "label": LABELS[int(bits.sum())],
        }
        if noise is not None and noise_missing is not None:
            row = {
                **{k: v for k, v in row.items() if k != "label"},
                "noise": None if noise_missing[i] else round(float(noise[i]), 3),
                "label": row["label"],
            }
        for col in ("image", "audio", "text", "reading"):
            if rng.random() < missing_rate:
                row[col] = None
        rows.append(row)
    return pd.DataFrame(rows)


def make_demo(out_dir: str | Path, n_train: int = 1200, n_test: int = 400, seed: int = 0) -> DemoPaths:
    """Generate the demo data set: ``train.csv`` and ``test.csv`` (disjoint rows) with their files."""
    out = Path(out_dir)
    train = generate(out, n_train, seed=seed, prefix="train_")
    test = generate(out, n_test, seed=seed + 10_000, prefix="test_")
    paths = DemoPaths(out, out / "train.csv", out / "test.csv")
    for frame, path in ((train, paths.train), (test, paths.test)):
        with atomic_file(path, "w", newline="", encoding="utf-8") as f:
            frame.to_csv(f, index=False)
    return paths


IMAGE_TEXT_LABELS = {
    (True, True): "circle-good",
    (True, False): "circle-bad",
    (False, True): "square-good",
    (False, False): "square-bad",
}


def generate_image_text(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    prefix: str = "",
    adjectives: slice = slice(None),
    shape_box: bool = False,
) -> pd.DataFrame:
    """Seed 000's task: an image and a review, four classes (shape × sentiment), so both columns are needed.

    ``adjectives`` picks which of the positive/negative adjectives reviews use (e.g. ``slice(0, 3)`` for training
    and ``slice(3, 6)`` for a test of words never seen in training, where only a pretrained text model can tell
    the sentiment). Writes the images under ``out_dir/images`` and returns the table (image, text, label).

    ``shape_box=True`` adds a column ``shape_box``: the shape's bounding box "x0,y0,x1,y1" in image pixels
    (inclusive; the images are 32×32), for checking where image explanations look. Leave it out of a fit
    (``ignore=["shape_box"]``): it is not an input.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pos, neg = POSITIVE[adjectives], NEGATIVE[adjectives]
    rows = []
    for i in range(n):
        circle, good = (bool(b) for b in rng.integers(0, 2, 2))
        path = f"images/{prefix}{i:05d}.png"
        im, box = _image_and_box(rng, circle)
        im.save(out / path)
        adj = rng.choice(pos if good else neg)
        text = f"{rng.choice(OPENERS)} the {rng.choice(ITEMS)} was {adj} {rng.choice(CLOSERS)}"
        row = {"image": path, "text": text, "label": IMAGE_TEXT_LABELS[(circle, good)]}
        if shape_box:
            row["shape_box"] = ",".join(str(v) for v in box)
        rows.append(row)
    return pd.DataFrame(rows)
