"""A generated sensor task: activities from an accelerometer, a gyroscope and a tabular column (issue 21).

Each row is one recording of a few seconds at ``RATE`` Hz, of varying length, as two ``.npy`` files (steps × 3
channels, float32) and a ``placement`` cell. The activity (``label``) combines two independent yes/no factors, and
the two sensors disagree on which one they show:

    accel   the step cadence: about 1.6 Hz (walk) or about 3.2 Hz (run) on every axis, under noise and a random
            gravity direction; its frequency says nothing about turning
    gyro    the turning direction: a yaw rate around +0.8 rad/s (left) or -0.8 rad/s (right) on the z axis, under a
            wobble whose frequency is random (so the gyroscope carries no cadence)
    placement   wrist or pocket: scales both sensors' amplitudes (a nuisance, not a factor of the label)

so ``label`` is one of ``walk_left``, ``walk_right``, ``run_left``, ``run_right``. Either sensor alone decides only
its factor, so it can be right at best half of the time; both together decide the label. ``missing_rate`` empties
that share of sensor cells (for missing-modality tests; 0 by default so that the fused task can be learned to
nearly 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_file

RATE = 50  # samples per second
MIN_STEPS, MAX_STEPS = 96, 192
CADENCE_HZ = {False: (1.3, 1.9), True: (2.9, 3.5)}  # walk, run
YAW_RATE = (0.5, 1.1)  # rad/s, its sign is the turning direction
PLACEMENTS = {"wrist": 1.0, "pocket": 0.6}
SENSOR_LABELS = {
    (False, True): "walk_left",
    (False, False): "walk_right",
    (True, True): "run_left",
    (True, False): "run_right",
}
SENSOR_COLUMNS = ("accel", "gyro", "placement")


@dataclass
class SensorPaths:
    """Where :func:`make_sensors` wrote the task: the folder, and its train/test tables (paths relative to it)."""

    root: Path
    train: Path
    test: Path


def _accel(rng: np.random.Generator, steps: int, run: bool, scale: float) -> np.ndarray:
    t = np.arange(steps) / RATE
    freq = rng.uniform(*CADENCE_HZ[run])
    phase = rng.uniform(0, 2 * np.pi)
    gravity = rng.normal(0, 1, 3)
    gravity = 9.81 * gravity / np.linalg.norm(gravity)
    # Each axis sees the cadence with its own gain; a harmonic makes the wave look like steps rather than a sine.
    gains = rng.uniform(0.5, 1.5, 3) * (3.0 if run else 1.5) * scale
    wave = np.sin(2 * np.pi * freq * t + phase) + 0.4 * np.sin(4 * np.pi * freq * t + 2 * phase)
    signal = gravity[None, :] + wave[:, None] * gains[None, :] + rng.normal(0, 0.4, (steps, 3))
    return signal.astype(np.float32)


def _gyro(rng: np.random.Generator, steps: int, left: bool, scale: float) -> np.ndarray:
    t = np.arange(steps) / RATE
    yaw = rng.uniform(*YAW_RATE) * (1.0 if left else -1.0)
    # The wobble's frequency is drawn over both cadence ranges, so the gyroscope cannot tell a walk from a run.
    wobble_hz = rng.uniform(CADENCE_HZ[False][0], CADENCE_HZ[True][1])
    wobble = np.sin(2 * np.pi * wobble_hz * t + rng.uniform(0, 2 * np.pi))
    gains = rng.uniform(0.3, 1.0, 3) * scale
    signal = wobble[:, None] * gains[None, :] + rng.normal(0, 0.15, (steps, 3))
    signal[:, 2] += yaw * scale
    return signal.astype(np.float32)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def generate_sensors(
    out_dir: str | Path, n: int, seed: int = 0, prefix: str = "", missing_rate: float = 0.0
) -> pd.DataFrame:
    """Write ``n`` recordings under ``out_dir/sensors`` and return their table (paths relative to ``out_dir``).

    Columns: ``accel`` and ``gyro`` (``.npy`` paths, steps × 3, lengths between ``MIN_STEPS`` and ``MAX_STEPS``),
    ``placement`` (wrist/pocket) and ``label``. The same ``seed`` writes the same files and table.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
    out = Path(out_dir)
    (out / "sensors").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        run, left = (bool(b) for b in rng.integers(0, 2, 2))
        placement = str(rng.choice(list(PLACEMENTS)))
        steps = int(rng.integers(MIN_STEPS, MAX_STEPS + 1))
        name = f"{prefix}{i:05d}"
        accel_path, gyro_path = f"sensors/{name}_accel.npy", f"sensors/{name}_gyro.npy"
        _save_npy(out / accel_path, _accel(rng, steps, run, PLACEMENTS[placement]))
        _save_npy(out / gyro_path, _gyro(rng, steps, left, PLACEMENTS[placement]))
        row: dict[str, object] = {
            "accel": accel_path,
            "gyro": gyro_path,
            "placement": placement,
            "label": SENSOR_LABELS[(run, left)],
        }
        for col in ("accel", "gyro"):
            if rng.random() < missing_rate:
                row[col] = None
        rows.append(row)
    return pd.DataFrame(rows)


def make_sensors(
    out_dir: str | Path, n_train: int = 800, n_test: int = 300, seed: int = 0, missing_rate: float = 0.0
) -> SensorPaths:
    """Generate the sensor task: ``train.csv`` and ``test.csv`` (disjoint rows) with their ``.npy`` files."""
    out = Path(out_dir)
    train = generate_sensors(out, n_train, seed=seed, prefix="train_", missing_rate=missing_rate)
    test = generate_sensors(out, n_test, seed=seed + 10_000, prefix="test_", missing_rate=missing_rate)
    paths = SensorPaths(out, out / "train.csv", out / "test.csv")
    for frame, path in ((train, paths.train), (test, paths.test)):
        with atomic_file(path, "w", newline="", encoding="utf-8") as f:
            frame.to_csv(f, index=False)
    return paths
