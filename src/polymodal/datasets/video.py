"""A generated video task whose answer needs motion, with a sound carrying another factor (issue 21).

Each row is a short clip (``FRAMES`` frames of ``SIZE`` × ``SIZE`` pixels at ``FPS``): a coloured disc on a noisy
background orbits the centre of the frame, clockwise or counterclockwise, from a uniformly drawn start angle. Its
angle is therefore uniform in every frame whatever the direction, and the arc it covers is the same under both, so
**any single frame, or the set of frames without their order, says nothing about the direction**: a model has to
compare frames in order.
A chirp that rises or falls (the ``audio`` column, a ``.wav`` file, and optionally the clip's own audio track)
carries a second factor. Columns:

    video      path of the ``.mp4`` (MPEG-4 Part 2 video, yuv420p; an AAC audio track when ``audio_track=True``)
    audio      path of the ``.wav`` with the chirp
    direction  clockwise / counterclockwise: the motion factor (the target of the motion benchmark)
    pitch      rising / falling: the sound factor
    label      ``<direction>_<pitch>``: the demo's target, which needs both the motion and the sound

Fit ``label`` with ``ignore=["direction", "pitch"]`` (they are its parts), or ``direction`` with
``ignore=["label", "pitch", "audio"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from .. import video_io
from ..io import atomic_file
from .synthetic import COLOURS, SAMPLE_RATE, SECONDS, _chirp

SIZE, FRAMES, FPS = 32, 16, 8
ANGULAR_SPEED = (0.15, 0.25)  # radians per frame: 16 frames turn 2.4 to 4 radians, short of one lap
ORBIT = (7.0, 10.0)  # pixels from the centre of the frame
# The sign of the angular speed, on screen (y points down: a growing angle turns clockwise). Rotation has no edge to
# wrap at, so a disc's position changes smoothly while the distribution of its angle is uniform in every frame.
DIRECTIONS = {"clockwise": 1.0, "counterclockwise": -1.0}
# motion="slide": the disc crosses the frame horizontally instead, a simpler (linear) motion signal. Its start is
# drawn so that the middle frame and the set of all positions have the same distribution under both directions;
# the first and last frames alone do not (a right-moving disc starts further left).
SLIDE_DIRECTIONS = {"right": 1.0, "left": -1.0}
SLIDE_SPEED = (0.6, 0.8)  # pixels per frame: 9 to 12 pixels per clip
MOTIONS = ("orbit", "slide")
PITCHES = ("rising", "falling")
VIDEO_FACTOR_COLUMNS = ("direction", "pitch")


@dataclass
class VideoPaths:
    """Where :func:`make_video_task` wrote the task: the folder, and its train/test tables."""

    root: Path
    train: Path
    test: Path


def _centres(rng: np.random.Generator, direction: str, frames: int, size: int) -> list[tuple[float, float]]:
    centre = (size - 1) / 2
    if direction in SLIDE_DIRECTIONS:
        speed = rng.uniform(*SLIDE_SPEED)
        travel = speed * (frames - 1)
        # the middle position is uniform over the same range for both directions
        mid = rng.uniform(6 + travel / 2, size - 7 - travel / 2)
        y = rng.uniform(6, size - 7)
        sign = SLIDE_DIRECTIONS[direction]
        return [(mid + sign * speed * (t - frames // 2), y) for t in range(frames)]  # frame frames // 2 at mid
    sign = DIRECTIONS[direction]
    speed = rng.uniform(*ANGULAR_SPEED)
    orbit = rng.uniform(*ORBIT)
    angle0 = rng.uniform(0, 2 * np.pi)  # uniform start, so the angle is uniform in every frame whatever the direction
    return [
        (centre + orbit * np.cos(angle0 + sign * speed * t), centre + orbit * np.sin(angle0 + sign * speed * t))
        for t in range(frames)
    ]


def motion_frames(rng: np.random.Generator, direction: str, frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """The clip's frames (frames x size x size x 3, uint8): a disc orbiting the centre in ``direction`` (clockwise,
    counterclockwise), or crossing the frame (right, left: ``motion="slide"``)."""
    centres = _centres(rng, direction, frames, size)
    radius = rng.uniform(4.0, 5.5)
    colour = np.array(COLOURS[int(rng.integers(len(COLOURS)))], dtype=np.float32)
    bg = rng.uniform(200, 255)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t, (cx, cy) in enumerate(centres):
        dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        inside = np.clip(radius + 0.5 - dist, 0.0, 1.0)[..., None]  # anti-aliased edge
        frame = bg * (1 - inside) + colour * inside + rng.normal(0, 6, (size, size, 3))
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def write_video(
    path: str | Path, frames: np.ndarray, fps: int = FPS, audio: np.ndarray | None = None, sample_rate: int = 8000
) -> Path:
    """Write ``frames`` (T × H × W × 3 uint8, H and W even) as a clip, atomically, at this task's frame rate and
    audio sample rate; ``audio`` (mono float32 in [-1, 1]) adds an audio track. See
    :func:`polymodal.video_io.write_video`."""
    return video_io.write_video(path, frames, fps, audio=audio, sample_rate=sample_rate)


def generate_video_task(
    out_dir: str | Path, n: int, seed: int = 0, prefix: str = "", audio_track: bool = False, motion: str = "orbit"
) -> pd.DataFrame:
    """Write ``n`` clips (and their chirps) under ``out_dir`` and return their table (paths relative to it).

    The direction and the pitch are drawn independently and uniformly; the same ``seed`` gives the same table
    and the same frames.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(DIRECTIONS if motion == "orbit" else SLIDE_DIRECTIONS)
    rows = []
    for i in range(n):
        direction = names[int(rng.integers(len(names)))]
        rising = bool(rng.integers(0, 2))
        pitch = PITCHES[0] if rising else PITCHES[1]
        name = f"{prefix}{i:05d}"
        video_path, audio_path = f"videos/{name}.mp4", f"audio/{name}.wav"
        frames = motion_frames(rng, direction)
        wave = _chirp(rng, rising)
        write_video(out / video_path, frames, audio=wave if audio_track else None, sample_rate=SAMPLE_RATE)
        with atomic_file(out / audio_path, "wb") as f:
            sf.write(f, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        rows.append(
            {
                "video": video_path,
                "audio": audio_path,
                "direction": direction,
                "pitch": pitch,
                "label": f"{direction}_{pitch}",
            }
        )
    return pd.DataFrame(rows)


def make_video_task(
    out_dir: str | Path,
    n_train: int = 800,
    n_test: int = 300,
    seed: int = 0,
    audio_track: bool = False,
    motion: str = "orbit",
) -> VideoPaths:
    """Generate the video task: ``train.csv`` and ``test.csv`` (disjoint rows) with their clips and chirps."""
    out = Path(out_dir)
    train = generate_video_task(out, n_train, seed=seed, prefix="train_", audio_track=audio_track, motion=motion)
    test = generate_video_task(out, n_test, seed=seed + 10_000, prefix="test_", audio_track=audio_track, motion=motion)
    paths = VideoPaths(out, out / "train.csv", out / "test.csv")
    for frame, path in ((train, paths.train), (test, paths.test)):
        with atomic_file(path, "w", newline="", encoding="utf-8") as f:
            frame.to_csv(f, index=False)
    return paths


CLIP_SECONDS = FRAMES / FPS
assert SECONDS <= CLIP_SECONDS  # the chirp fits inside the clip, so an audio track ends with the video
