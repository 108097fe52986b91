"""The issue-21 generators: the sensor task and the motion video task (shapes, determinism, the designed factors)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from polymodal.datasets.sensors import (
    MAX_STEPS,
    MIN_STEPS,
    RATE,
    SENSOR_LABELS,
    generate_sensors,
    make_sensors,
)
from polymodal.datasets.video import (
    DIRECTIONS,
    FRAMES,
    SIZE,
    generate_video_task,
    make_video_task,
    motion_frames,
    write_video,
)

av = pytest.importorskip("av")


def _digest(root: Path, frame: pd.DataFrame, columns: tuple[str, ...]) -> str:
    h = hashlib.sha256(frame.to_csv(index=False).encode())
    for col in columns:
        for rel in frame[col].dropna():
            h.update((root / rel).read_bytes())
    return h.hexdigest()


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_sensor_generator_is_deterministic(tmp_path):
    a = generate_sensors(tmp_path / "a", 10, seed=3)
    b = generate_sensors(tmp_path / "b", 10, seed=3)
    c = generate_sensors(tmp_path / "c", 10, seed=4)
    cols = ("accel", "gyro")
    assert _digest(tmp_path / "a", a, cols) == _digest(tmp_path / "b", b, cols)
    assert _digest(tmp_path / "c", c, cols) != _digest(tmp_path / "a", a, cols)


def test_sensor_files_shapes_and_lengths(tmp_path):
    frame = generate_sensors(tmp_path, 24, seed=0)
    assert list(frame.columns) == ["accel", "gyro", "placement", "label"]
    assert set(frame["label"]) <= set(SENSOR_LABELS.values())
    lengths = set()
    for _, row in frame.iterrows():
        accel, gyro = np.load(tmp_path / row["accel"]), np.load(tmp_path / row["gyro"])
        assert accel.dtype == gyro.dtype == np.float32
        assert accel.shape == gyro.shape and accel.shape[1] == 3
        assert MIN_STEPS <= accel.shape[0] <= MAX_STEPS
        assert np.isfinite(accel).all() and np.isfinite(gyro).all()
        lengths.add(accel.shape[0])
    assert len(lengths) > 1  # lengths vary per row


def _dominant_hz(series: np.ndarray) -> float:
    x = series - series.mean(axis=0)
    power = (np.abs(np.fft.rfft(x, axis=0)) ** 2).sum(axis=1)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    return float(freqs[1:][np.argmax(power[1:])])


def test_each_sensor_shows_its_own_factor_only(tmp_path):
    """Cadence (walk/run) is in the accelerometer's frequency, turning in the gyroscope's yaw; not the other way."""
    frame = generate_sensors(tmp_path, 80, seed=1)
    run = frame["label"].str.startswith("run").to_numpy()
    left = frame["label"].str.endswith("left").to_numpy()
    accel_hz = np.array([_dominant_hz(np.load(tmp_path / p)) for p in frame["accel"]])
    gyro_hz = np.array([_dominant_hz(np.load(tmp_path / p)[:, :2]) for p in frame["gyro"]])
    yaw = np.array([np.load(tmp_path / p)[:, 2].mean() for p in frame["gyro"]])
    assert ((accel_hz > 2.4) == run).mean() >= 0.95  # the accelerometer tells the cadence
    assert ((yaw > 0) == left).all()  # the gyroscope tells the turn
    # ...while the gyroscope's wobble frequency says little about the cadence (a threshold is near a coin toss)
    assert 0.3 <= ((gyro_hz > 2.4) == run).mean() <= 0.7


def test_make_sensors_writes_disjoint_tables(tmp_path):
    paths = make_sensors(tmp_path, n_train=8, n_test=4, seed=0, missing_rate=0.3)
    train, test = pd.read_csv(paths.train), pd.read_csv(paths.test)
    assert len(train) == 8 and len(test) == 4
    assert not set(train["accel"].dropna()) & set(test["accel"].dropna())
    assert train[["accel", "gyro"]].isna().any().any() or test[["accel", "gyro"]].isna().any().any()
    with pytest.raises(ValueError, match="missing_rate"):
        generate_sensors(tmp_path, 2, missing_rate=1.0)


def test_video_generator_is_deterministic_and_decodable(tmp_path):
    a = generate_video_task(tmp_path / "a", 6, seed=2)
    b = generate_video_task(tmp_path / "b", 6, seed=2)
    assert a.equals(b)
    assert list(a.columns) == ["video", "audio", "direction", "pitch", "label"]
    for rel in a["video"]:
        np.testing.assert_array_equal(_decode(tmp_path / "a" / rel), _decode(tmp_path / "b" / rel))
    clip = _decode(tmp_path / "a" / a["video"][0])
    assert clip.shape == (FRAMES, SIZE, SIZE, 3)
    wave, rate = sf.read(tmp_path / "a" / a["audio"][0])
    assert rate == 8000 and wave.ndim == 1 and len(wave) > 0
    assert (a["label"] == a["direction"] + "_" + a["pitch"]).all()


def _angle(frame: np.ndarray) -> float:
    """The angle of the disc (darker than the background) around the frame's centre, from its darkness-weighted
    centroid."""
    dark = np.clip(frame.astype(np.float32).mean(axis=2).max() - frame.astype(np.float32).mean(axis=2) - 40, 0, None)
    yy, xx = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
    c = (frame.shape[0] - 1) / 2
    return float(np.arctan2((dark * (yy - c)).sum(), (dark * (xx - c)).sum()))


def test_video_motion_survives_the_codec_and_no_single_frame_tells_it(tmp_path):
    """The decoded clip's angle turns the labelled way; the first frame's angle is uniform under both directions."""
    frame = generate_video_task(tmp_path, 24, seed=5)
    for _, row in frame.iterrows():
        clip = _decode(tmp_path / row["video"])
        turn = np.angle(np.exp(1j * (_angle(clip[4]) - _angle(clip[0]))))  # y points down: positive = clockwise
        assert np.sign(turn) == DIRECTIONS[row["direction"]], (row["direction"], turn)
    rng = np.random.default_rng(0)
    for direction in DIRECTIONS:
        angles = np.array([_angle(motion_frames(rng, direction, frames=1)[0]) for _ in range(300)])
        # the mean resultant length of uniform angles is about 1/sqrt(n) = 0.06; a preferred angle would raise it
        assert abs(np.exp(1j * angles).mean()) < 0.15, direction


def test_write_video_audio_track_and_atomic(tmp_path):
    frames = motion_frames(np.random.default_rng(0), "clockwise", frames=4)
    write_video(tmp_path / "clip.mp4", frames, fps=4, audio=np.zeros(4000, np.float32), sample_rate=8000)
    with av.open(str(tmp_path / "clip.mp4")) as c:
        assert sorted(s.type for s in c.streams) == ["audio", "video"]
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temp file left behind
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "bad.mp4", np.zeros((2, 7, 7, 3), np.uint8))


def test_write_video_failure_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("encoder gave up")

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", broken)
    with pytest.raises(RuntimeError, match="gave up"):
        write_video(tmp_path / "clip.mp4", motion_frames(np.random.default_rng(0), "clockwise", frames=2))
    assert list(tmp_path.iterdir()) == []


def test_make_video_task(tmp_path):
    paths = make_video_task(tmp_path, n_train=4, n_test=2, seed=0, audio_track=True)
    train, test = pd.read_csv(paths.train), pd.read_csv(paths.test)
    assert len(train) == 4 and len(test) == 2
    assert all((paths.root / p).is_file() for p in [*train["video"], *test["audio"]])


def test_slide_motion_and_middle_frame(tmp_path):
    """motion="slide": the disc crosses the frame the labelled way; the middle frame's position does not tell."""
    frame = generate_video_task(tmp_path, 12, seed=1, motion="slide")
    assert set(frame["direction"]) <= {"left", "right"}

    def centre_x(image: np.ndarray) -> float:
        grey = image.astype(np.float32).mean(axis=2)
        dark = np.clip(grey.max() - grey - 40, 0, None)
        return float((dark * np.arange(image.shape[1])[None, :]).sum() / dark.sum())

    for _, row in frame.iterrows():
        clip = _decode(tmp_path / row["video"])
        moved = centre_x(clip[-1]) - centre_x(clip[0])
        assert np.sign(moved) == (1 if row["direction"] == "right" else -1), (row["direction"], moved)
    rng = np.random.default_rng(0)
    mids = {d: [centre_x(motion_frames(rng, d)[FRAMES // 2]) for _ in range(150)] for d in ("left", "right")}
    assert abs(np.mean(mids["left"]) - np.mean(mids["right"])) < 0.6
    with pytest.raises(ValueError, match="motion"):
        generate_video_task(tmp_path, 1, motion="zoom")
