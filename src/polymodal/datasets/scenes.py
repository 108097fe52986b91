"""Synthetic scenes for captioning and visual question answering (seeds 002 and 003).

A scene is a 48x48 image of 1-3 coloured shapes, each in its own cell of a 3x3 grid. Its caption names every shape's
colour, kind and position in reading order (top to bottom, left to right)::

    a red circle at the top left, a blue square at the centre and a green triangle at the bottom right

Questions about the same scenes (text, and optionally speech rendered with espeak-ng) have short answers::

    what colour is the square?        -> blue
    what shape is at the top left?    -> circle
    how many shapes are there?        -> three
    is there a green triangle?        -> yes
    where is the red circle?          -> top left

Held-out tests are made of *unseen* scenes: no test scene has the same set of (colour, shape, position) objects as
a training scene, so no test caption was seen in training. ``make_captioning`` also writes a harder test whose
scenes each hold a (colour, shape) pair that never occurs in training (``HELD_OUT_PAIRS``): systematic
generalisation to new attribute combinations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ..io import atomic_file

log = logging.getLogger("polymodal")

SCENE_SIZE = 48
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "orange": (235, 140, 20),
    "purple": (150, 60, 190),
    "cyan": (20, 170, 170),
}
SHAPES = ["circle", "square", "triangle"]
HELD_OUT_PAIRS = frozenset({("red", "triangle"), ("blue", "circle"), ("green", "square")})
COUNTS = ["zero", "one", "two", "three"]
SPEEDS, PITCHES = (130, 160, 190), (30, 50, 70)


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    row: int  # 0 top, 1 middle, 2 bottom
    col: int  # 0 left, 1 centre, 2 right

    @property
    def position(self) -> str:
        return position_name(self.row, self.col)

    def phrase(self) -> str:
        return f"{article(self.colour)} {self.colour} {self.shape} at the {self.position}"


Scene = tuple[SceneObject, ...]  # in reading order


def position_name(row: int, col: int) -> str:
    """ "top left", "top", ..., "centre", ..., "bottom right"."""
    parts = [("top", "", "bottom")[row], ("left", "", "right")[col]]
    return " ".join(p for p in parts if p) or "centre"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: Scene) -> str:
    phrases = [o.phrase() for o in scene]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def signature(scene: Scene) -> frozenset[SceneObject]:
    return frozenset(scene)


def random_scene(rng: np.random.Generator, pairs: list[tuple[str, str]]) -> Scene:
    """1-3 objects in distinct grid cells, each a (colour, shape) drawn from ``pairs``."""
    n = int(rng.integers(1, 4))
    cells = rng.choice(9, n, replace=False)
    objs = []
    for cell in sorted(int(c) for c in cells):
        colour, shape = pairs[int(rng.integers(len(pairs)))]
        objs.append(SceneObject(colour, shape, cell // 3, cell % 3))
    return tuple(objs)


def render(scene: Scene, rng: np.random.Generator, size: int = SCENE_SIZE) -> Image.Image:
    """Draw the scene on a noisy light background; shapes sit near their cell's centre (small jitter), so the
    training-time shift augmentation never carries one into another cell."""
    bg = int(rng.integers(200, 256))
    arr = np.clip(bg + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    draw = ImageDraw.Draw(im)
    cell = size / 3
    for o in scene:
        cx = (o.col + 0.5) * cell + rng.uniform(-2, 2)
        cy = (o.row + 0.5) * cell + rng.uniform(-2, 2)
        r = rng.uniform(0.3, 0.38) * cell  # about 5-6 px at 48x48: neighbours never touch
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif o.shape == "square":
            h = 0.85 * r
            draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=fill)
    return im


def _pairs(exclude: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    ex = set(exclude)
    return [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in ex]


def sample_scenes(
    n: int,
    rng: np.random.Generator,
    pairs: list[tuple[str, str]],
    avoid: set[frozenset[SceneObject]] | None = None,
    must_have: frozenset[tuple[str, str]] | None = None,
) -> list[Scene]:
    """``n`` scenes whose object sets are not in ``avoid``; with ``must_have``, each holds one of those pairs."""
    out: list[Scene] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 1000 * max(n, 1):
            raise RuntimeError("cannot draw enough distinct scenes; ask for fewer rows")
        scene = random_scene(rng, pairs)
        if avoid is not None and signature(scene) in avoid:
            continue
        if must_have is not None and not any((o.colour, o.shape) in must_have for o in scene):
            continue
        out.append(scene)
    return out


def _write_images(out: Path, scenes: list[Scene], prefix: str, rng: np.random.Generator) -> list[str]:
    (out / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(scenes):
        path = f"images/{prefix}{i:05d}.png"
        render(scene, rng).save(out / path)
        paths.append(path)
    return paths


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    with atomic_file(path, "w", newline="", encoding="utf-8") as f:
        frame.to_csv(f, index=False)
    return path


# --- captioning -------------------------------------------------------------------------------------------------
@dataclass
class CaptioningPaths:
    root: Path
    train: Path
    test: Path  # unseen scenes of the training attribute pairs
    test_novel_pairs: Path  # every scene holds a (colour, shape) pair never seen in training


def generate_captioning(out_dir: str | Path, scenes: list[Scene], seed: int = 0, prefix: str = "") -> pd.DataFrame:
    """Render ``scenes`` under ``out_dir/images``; the table has columns image, caption."""
    out = Path(out_dir)
    paths = _write_images(out, scenes, prefix, np.random.default_rng(seed))
    return pd.DataFrame({"image": paths, "caption": [caption(s) for s in scenes]})


def make_captioning(out_dir: str | Path, n_train: int = 3000, n_test: int = 500, seed: int = 0) -> CaptioningPaths:
    """The captioning data set: train.csv, test.csv (unseen scenes) and test_novel_pairs.csv (unseen
    (colour, shape) pairs), each with columns image, caption."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    pairs = _pairs(HELD_OUT_PAIRS)
    train = sample_scenes(n_train, rng, pairs)
    seen = {signature(s) for s in train}
    test = sample_scenes(n_test, rng, pairs, avoid=seen)
    novel = sample_scenes(max(n_test // 2, 1), rng, _pairs(), avoid=seen, must_have=HELD_OUT_PAIRS)
    paths = CaptioningPaths(out, out / "train.csv", out / "test.csv", out / "test_novel_pairs.csv")
    for scenes, path, prefix, s in (
        (train, paths.train, "train_", seed),
        (test, paths.test, "test_", seed + 1),
        (novel, paths.test_novel_pairs, "novel_", seed + 2),
    ):
        _write_csv(generate_captioning(out, scenes, seed=s, prefix=prefix), path)
    return paths


# --- question answering -----------------------------------------------------------------------------------------
def question_answer(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """One question about ``scene`` and its answer; the question type is drawn uniformly among those that have a
    unique answer for this scene."""
    shapes = [o.shape for o in scene]
    pairs = [(o.colour, o.shape) for o in scene]
    kinds = ["shape_at", "count", "exists"]
    if any(shapes.count(s) == 1 for s in shapes):
        kinds.append("colour")
    if any(pairs.count(p) == 1 for p in pairs):
        kinds.append("where")
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "colour":
        o = [o for o in scene if shapes.count(o.shape) == 1][
            int(rng.integers(sum(shapes.count(s) == 1 for s in shapes)))
        ]
        return f"what colour is the {o.shape}?", o.colour
    if kind == "shape_at":
        o = scene[int(rng.integers(len(scene)))]
        return f"what shape is at the {o.position}?", o.shape
    if kind == "count":
        return "how many shapes are there?", COUNTS[len(scene)]
    if kind == "where":
        unique = [o for o in scene if pairs.count((o.colour, o.shape)) == 1]
        o = unique[int(rng.integers(len(unique)))]
        return f"where is the {o.colour} {o.shape}?", o.position
    if rng.random() < 0.5:
        o = scene[int(rng.integers(len(scene)))]
        return f"is there {article(o.colour)} {o.colour} {o.shape}?", "yes"
    absent = [p for p in _pairs() if p not in pairs]
    c, s = absent[int(rng.integers(len(absent)))]
    return f"is there {article(c)} {c} {s}?", "no"


QUESTION_KINDS = {
    "what colour": "colour",
    "what shape": "shape_at",
    "how many": "count",
    "is there": "exists",
    "where": "where",
}


def question_kind(question: str) -> str:
    """The kind of a question written by ``question_answer`` ("colour", "shape_at", ...), from its first words."""
    for start, kind in QUESTION_KINDS.items():
        if question.startswith(start):
            return kind
    raise ValueError(f"not a scene question: {question!r}")


@dataclass
class QAPaths:
    root: Path
    train: Path
    test: Path
    speech: bool  # whether question_audio holds spoken questions


def _speech_files(out: Path, questions: list[str], rng: np.random.Generator) -> list[str]:
    """Speak each question with a random speed and pitch; equal (question, speed, pitch) share one file."""
    import hashlib

    from .speech import speak

    paths = []
    for q in questions:
        speed, pitch = int(rng.choice(SPEEDS)), int(rng.choice(PITCHES))
        key = hashlib.blake2b(f"{q}|{speed}|{pitch}".encode(), digest_size=8).hexdigest()
        rel = f"speech/{key}.wav"
        if not (out / rel).is_file():
            speak(q, out / rel, speed=speed, pitch=pitch)
        paths.append(rel)
    return paths


def scene_questions(scene: Scene, rng: np.random.Generator, k: int = 1) -> list[tuple[str, str]]:
    """Up to ``k`` distinct (question, answer) pairs about ``scene`` (fewer when it has fewer to ask)."""
    out: dict[str, str] = {}
    for _ in range(20 * k):
        q, a = question_answer(scene, rng)
        out.setdefault(q, a)
        if len(out) == k:
            break
    return list(out.items())


def generate_qa(
    out_dir: str | Path,
    scenes: list[Scene],
    seed: int = 0,
    prefix: str = "",
    speech: bool = False,
    questions_per_scene: int = 1,
) -> pd.DataFrame:
    """Render ``scenes`` and ask ``questions_per_scene`` distinct questions about each (rows of one scene share
    its image): columns image, question, answer (and question_audio, the question spoken by espeak-ng, with
    ``speech``)."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    paths = _write_images(out, scenes, prefix, rng)
    rows = [
        (path, q, a) for path, scene in zip(paths, scenes) for q, a in scene_questions(scene, rng, questions_per_scene)
    ]
    frame = pd.DataFrame({"image": [r[0] for r in rows], "question": [r[1] for r in rows]})
    if speech:
        frame["question_audio"] = _speech_files(out, frame["question"].tolist(), rng)
    frame["answer"] = [r[2] for r in rows]
    return frame


def make_qa(
    out_dir: str | Path,
    n_train: int = 3000,
    n_test: int = 500,
    seed: int = 0,
    speech: bool | None = None,
    questions_per_scene: int = 1,
) -> QAPaths:
    """The QA data set: train.csv and test.csv (unseen scenes), columns image, question, [question_audio], answer.

    ``questions_per_scene``: distinct questions asked about each training scene (the test asks one per scene), as
    CLEVR asks about ten per image: more supervision per rendered image.

    ``speech``: True renders spoken questions (espeak-ng must be installed), False does not, None renders them when
    espeak-ng is available.
    """
    from .speech import espeak_binary

    if speech is None:
        speech = espeak_binary() is not None
        if not speech:
            log.warning("espeak-ng is not installed: the QA data set has text questions only")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    pairs = _pairs()
    train = sample_scenes(n_train, rng, pairs)
    test = sample_scenes(n_test, rng, pairs, avoid={signature(s) for s in train})
    paths = QAPaths(out, out / "train.csv", out / "test.csv", bool(speech))
    for scenes, path, prefix, s, k in (
        (train, paths.train, "train_", seed, questions_per_scene),
        (test, paths.test, "test_", seed + 1, 1),
    ):
        _write_csv(generate_qa(out, scenes, seed=s, prefix=prefix, speech=bool(speech), questions_per_scene=k), path)
    return paths
