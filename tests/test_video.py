"""The video kind: PyAV decoding under limits, schema inference, the processor, the encoders, corruptions, bad input.

Clips are written in-process with PyAV's bundled encoders (MPEG-4 Part 2, VP8), a few 16x16 frames each.
"""

from __future__ import annotations

import base64
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import Predictor
from polymodal.config import LimitsConfig, PolymodalConfig, ProcessingConfig
from polymodal.data.processors import LoadContext
from polymodal.data.video import load_video, video_info, write_video
from polymodal.data.video_processing import VideoProcessor
from polymodal.encoders.video import VideoCNN, frame_differences
from polymodal.errors import LoadError
from polymodal.evaluation.corruptions import CORRUPTIONS, drop_frames, occlude
from polymodal.params.encoders import VideoCNNConfig
from polymodal.schema import ColumnKind, Modality, infer_column, infer_schema

LIMITS = LimitsConfig()
SIDE, FRAMES = 16, 8


def moving_square(right: bool, x0: int, y: int, frames: int = FRAMES, colour=(255, 200, 80)) -> np.ndarray:
    """A 4x4 square moving one pixel per frame to the right or to the left: [T, H, W, 3] uint8."""
    clip = np.zeros((frames, SIDE, SIDE, 3), np.uint8)
    for t in range(frames):
        x = x0 + t if right else x0 + frames - 1 - t
        clip[t, y : y + 4, x : x + 4] = colour
    return clip


def motion_table(root: Path, n: int, seed: int, prefix: str = "") -> pd.DataFrame:
    """The direction a square moves: every single frame is equally likely under both labels (chance alone)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        right = bool(rng.integers(2))
        clip = moving_square(right, int(rng.integers(0, SIDE - 4 - FRAMES + 1)), int(rng.integers(0, SIDE - 4)))
        name = f"{prefix}c{i}.mp4"
        write_video(root / name, clip, 8)
        rows.append({"clip": name, "label": "right" if right else "left"})
    return pd.DataFrame(rows)


def tiny_video_config(temporal: str = "transformer", motion: str = "diff", **training) -> dict:
    return {
        "training": {"max_epochs": 25, "batch_size": 16, "patience": 25, **training},
        "processing": {"video_frames": FRAMES},
        "encoders": {
            "video": {
                "name": "video_cnn",
                "width": 8,
                "dim": 16,
                "stages": 2,
                "temporal": temporal,
                "motion": motion,
                "temporal_layers": 1,
            }
        },
    }


# ------------------------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("ext", [".mp4", ".webm", ".mkv", ".avi", ".mov"])
def test_write_and_decode_every_container(tmp_path, ext):
    clip = moving_square(True, 0, 6, frames=12)
    path = write_video(tmp_path / f"c{ext}", clip, 8, audio=np.zeros(8000, np.float32))
    info = video_info(path, LIMITS)
    assert (info.width, info.height) == (SIDE, SIDE) and info.fps == pytest.approx(8.0)
    assert info.seconds == pytest.approx(1.5, abs=0.1)
    frames = load_video(path, LIMITS, 12, SIDE)
    assert frames.dtype == np.uint8 and frames.shape == (12, 3, SIDE, SIDE)
    # the square's left edge, frame by frame: the order of the frames survives encoding and decoding
    assert (frames[:, 0, 7] > 128).argmax(1).tolist() == list(range(12))


def test_frames_are_sampled_uniformly_over_a_long_clip(tmp_path):
    clip = np.zeros((40, SIDE, SIDE, 3), np.uint8)
    for t in range(40):
        clip[t] = 6 * t  # the frame index as its brightness
    path = write_video(tmp_path / "long.mkv", clip, 20)  # mkv: no frame count in the header
    frames = load_video(path, LIMITS, 8, 8)
    assert len(frames) == 8
    index = frames.reshape(8, -1).mean(1) / 6
    assert np.all(np.diff(index) > 3), index  # spread over the clip, in order
    assert index[0] < 3 and index[-1] > 30  # thinning by halves may end a few frames before the last


def test_write_video_refuses_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 15, 16, 3), np.uint8), 8)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 16, 16), np.float32), 8)
    with pytest.raises(ValueError, match="use one of"):
        write_video(tmp_path / "a.gif", np.zeros((2, 16, 16, 3), np.uint8), 8)
    assert not list(tmp_path.iterdir()), "nothing half-written"


# ------------------------------------------------------------------------------------------------ bad files
def three_hour_header(path: Path, seconds: int = 3 * 3600) -> Path:
    """Two frames, 3 hours apart: a tiny file whose header declares a 3-hour video."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=1)
        s.width = s.height = SIDE
        s.pix_fmt = "yuv420p"
        for pts in (0, seconds):
            frame = av.VideoFrame.from_ndarray(np.zeros((SIDE, SIDE, 3), np.uint8), format="rgb24")
            frame.pts = pts
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*s.encode(frame), *s.encode()]:
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def huge_video(tmp_path_factory) -> bytes:
    """One black 8192x8192 frame (67 M pixels, over the default 36 M) in 200 kB of H.264 (about 3 s to encode)."""
    path = tmp_path_factory.mktemp("huge") / "huge.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=1)
        s.width = s.height = 8192
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "ultrafast"}
        frame = av.VideoFrame.from_ndarray(np.zeros((8192 * 3 // 2, 8192), np.uint8), format="yuv420p")
        for packet in [*s.encode(frame), *s.encode()]:
            out.mux(packet)
    return path.read_bytes()


def test_three_hour_header_is_refused_before_decoding(tmp_path, monkeypatch):
    path = three_hour_header(tmp_path / "h.mkv")
    assert path.stat().st_size < 10_000

    def no_decoding(*a, **k):
        raise AssertionError("decoded a frame")

    monkeypatch.setattr(np, "stack", no_decoding)  # load_video stacks the frames it decoded
    with pytest.raises(LoadError, match=r"10,801.0 s long by its header, over the limit of 600 s"):
        load_video(path, LIMITS, 8, SIDE)


def test_huge_frame_size_is_refused_from_the_header(tmp_path, huge_video):
    path = tmp_path / "bomb.mkv"
    path.write_bytes(huge_video)
    with pytest.raises(LoadError, match="8192x8192 = 67,108,864 pixels.*decompression bomb"):
        video_info(path, LIMITS)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: audio_only(p.with_suffix(".mp4")), "holds no video stream"),
        (lambda p: p.with_suffix(".mp4").write_bytes(b"\x00garbage" * 100) and p.with_suffix(".mp4"), "not a readable"),
    ],
)
def test_unreadable_files(tmp_path, make, message):
    with pytest.raises(LoadError, match=message):
        load_video(make(tmp_path / "x"), LIMITS, 8, SIDE)


def test_unknown_codec(tmp_path):
    """An AVI whose codec tag FFmpeg does not know (found by benchmarks/fuzz_loaders.py): a LoadError, not a crash."""
    data = write_video(tmp_path / "c.avi", np.zeros((3, 8, 8, 3), np.uint8), 4).read_bytes()
    bad = tmp_path / "bad.avi"
    bad.write_bytes(data.replace(b"FMP4", b"ZZZZ"))
    with pytest.raises(LoadError, match="codec is unknown to FFmpeg"):
        load_video(bad, LIMITS, 4, 8)


def test_truncated_file(tmp_path):
    full = write_video(tmp_path / "full.mp4", moving_square(True, 0, 0), 8).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(LoadError, match="video|frame"):
        load_video(cut, LIMITS, 8, SIDE)


def test_frame_count_limit_while_decoding_and_file_size(tmp_path):
    path = write_video(tmp_path / "c.webm", np.zeros((30, SIDE, SIDE, 3), np.uint8), 30)  # webm: no frame count
    with pytest.raises(LoadError, match="more than 10 frames"):
        load_video(path, LimitsConfig(max_video_frames=10), 4, SIDE)
    with pytest.raises(LoadError, match="over the limit of 100 .limits.max_file_bytes"):
        load_video(path, LimitsConfig(max_file_bytes=100), 4, SIDE)


# ------------------------------------------------------------------------------------------------ schema
def test_video_paths_are_inferred_as_video_never_text():
    paths = pd.Series([f"clips/c{i}.mp4" for i in range(30)], name="clip")
    spec = infer_column(paths)
    assert spec.kind is ColumnKind.VIDEO and ".mp4" in spec.reason and "paths" in spec.reason
    mixed = pd.Series([f"v/{i}{e}" for i in range(6) for e in (".webm", ".mkv", ".avi", ".mov", ".MP4")], name="v")
    assert infer_column(mixed).kind is ColumnKind.VIDEO
    schema = infer_schema(pd.DataFrame({"clip": paths, "y": [0, 1] * 15}), "y")
    assert [(m.kind, m.columns) for m in schema.modalities()] == [("video", ["clip"])]
    # a column without the extensions is set to video by hand, as any kind is
    odd = pd.DataFrame({"cam": [f"cam/{i}.bin" for i in range(30)], "y": [0, 1] * 15})
    assert infer_schema(odd, "y", overrides={"cam": "video"}).kinds()["cam"] is ColumnKind.VIDEO
    assert PolymodalConfig(columns={"cam": "video"}).columns == {"cam": "video"}


# ------------------------------------------------------------------------------------------------ processor
def test_processor_sampling_collate_and_state(tmp_path):
    table = motion_table(tmp_path, 6, seed=0)
    ctx = LoadContext(tmp_path, LIMITS)
    proc = VideoProcessor("clip", ["clip"], ProcessingConfig(video_frames=4))
    proc.fit(table, ctx)
    assert proc.size == SIDE and proc.frames == 4 and len(proc.mean) == 3
    items = [proc.load(v, ctx) for v in table["clip"]]
    assert items[0].shape == (8, 3, SIDE, SIDE)  # 2 candidates per sampled frame
    assert proc.pick(8, train=False).tolist() == [1, 3, 5, 7]
    torch.manual_seed(0)
    jittered = {tuple(proc.pick(8, train=True).tolist()) for _ in range(20)}
    assert len(jittered) > 1 and all(list(j) == sorted(j) for j in jittered)  # random, and still in order
    short = items[1][:3]
    batch = proc.collate([items[0], None, short], train=False)
    assert batch["clip"].shape == (3, 4, 3, SIDE, SIDE)
    assert batch["clip.frames"].tolist() == [[True] * 4, [False] * 4, [True, True, True, False]]
    assert torch.all(batch["clip"][1] == 0) and torch.all(batch["clip"][2, 3] == 0)
    again = VideoProcessor("clip", ["clip"], ProcessingConfig())
    again.set_state(proc.state(), proc.tensors())
    assert torch.equal(again.collate(items[:2], train=False)["clip"], proc.collate(items[:2], train=False)["clip"])


# ------------------------------------------------------------------------------------------------ learning
@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    return root, motion_table(root, 160, seed=0), motion_table(root, 60, seed=1, prefix="t")


@pytest.fixture(scope="module")
def temporal_model(motion):
    root, train, _ = motion
    cfg = tiny_video_config()
    return Predictor("label", config=cfg, data_root=root, preset="fast", seed=0, verbose=False).fit(train)


def test_temporal_transformer_learns_the_direction_of_motion(motion, temporal_model):
    _, _, test = motion
    acc = (temporal_model.predict(test.drop(columns="label")) == test["label"]).mean()
    assert acc >= 0.9, acc


def test_order_blind_mean_pooling_cannot(motion):
    root, train, test = motion
    cfg = tiny_video_config("mean", motion="none", max_epochs=8)  # frame differences would carry the order
    p = Predictor("label", config=cfg, data_root=root, preset="fast", seed=0, verbose=False).fit(train)
    acc = (p.predict(test.drop(columns="label")) == test["label"]).mean()
    assert acc <= 0.75, acc  # every frame, and so every bag of frames, is equally likely under both labels


def test_frame_differences_are_zero_at_the_first_and_next_to_padded_frames():
    x = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1, 1, 1).expand(2, 4, 3, 2, 2).clone()
    frames = torch.tensor([[True, True, True, True], [True, True, False, False]])
    d = frame_differences(x * frames.view(2, 4, 1, 1, 1), frames)
    assert d.shape == x.shape
    assert d[:, 0].abs().sum() == 0  # nothing before the first frame
    assert torch.all(d[0, 1:] == 1) and torch.all(d[1, 1] == 1)  # each frame minus the one before it
    assert d[1, 2:].abs().sum() == 0  # a clip ending early does not "move" to its blank padding


@pytest.mark.parametrize("option, channels", [("diff", 6), ("none", 3)])
def test_motion_option_sets_the_frame_cnn_input(option, channels):
    proc = VideoProcessor("clip", ["clip"], ProcessingConfig(video_frames=4))
    proc.size, proc.frames = SIDE, 4
    cfg = VideoCNNConfig(width=8, dim=16, stages=2, temporal_layers=1, motion=option, coords=False)
    enc = VideoCNN(Modality("clip", "video", ["clip"]), proc, cfg)
    assert enc.trunk.net[0].in_channels == channels
    x = torch.randn(3, 4, 3, SIDE, SIDE)
    out = enc.encode({"clip": x, "clip.frames": torch.ones(3, 4, dtype=torch.bool)}, torch.ones(3, dtype=torch.bool))
    assert out.pooled.shape == (3, 16) and torch.isfinite(out.pooled).all()
    with pytest.raises(ValueError, match="motion"):
        VideoCNNConfig(motion="flow")


def test_save_load_and_absent_video(motion, temporal_model, tmp_path):
    root, _, test = motion
    temporal_model.save(tmp_path / "run")
    loaded = Predictor.load(tmp_path / "run", verbose=False)
    rows = test.drop(columns="label").head(10).copy()
    np.testing.assert_allclose(
        loaded.predict_proba(rows, data_root=root).to_numpy(), temporal_model.predict_proba(rows).to_numpy(), atol=1e-6
    )
    rows.loc[rows.index[0], "clip"] = None  # an absent video: a prediction all the same
    proba = loaded.predict_proba(rows, data_root=root).to_numpy()
    assert np.all(np.isfinite(proba))


def test_robustness_sweep_over_video_corruptions(motion, temporal_model):
    root, _, test = motion
    m = temporal_model.evaluate(test, data_root=root, robustness=True)
    f = m["robustness"].to_frame()
    assert {"frame_drop", "gaussian_noise", "occlusion"} <= set(f["corruption"])
    dropped = f[f["corruption"] == "frame_drop"].sort_values("severity")
    assert dropped["accuracy"].iloc[0] == m["accuracy"]  # severity 0: the clean score
    assert dropped["accuracy"].iloc[-1] < m["accuracy"], "a stuttering clip hides the motion"


# ------------------------------------------------------------------------------------------------ corruptions
def test_corruptions_on_videos():
    rng = np.random.default_rng(0)
    video = np.arange(6)[:, None, None, None].repeat(3, 1).repeat(4, 2).repeat(4, 3).astype(np.uint8) + 1
    frozen = drop_frames(video, 0.5, np.random.default_rng(1))
    seq = frozen[:, 0, 0, 0].tolist()
    assert seq[0] == 1 and seq == sorted(seq) and len(seq) == 6 and len(set(seq)) < 6
    assert drop_frames(video, 0.0, rng).tolist() == video.tolist()
    hidden = occlude(video, 0.25, rng)
    assert np.all((hidden == 0).sum((1, 2, 3)) == 3 * 4), "the same 2x2 patch black on every frame"
    assert set(CORRUPTIONS.get("frame_drop").kinds) == {"video"}


# ------------------------------------------------------------------------------------------------ bad input, CLI
@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (three_hour_header, "10,801.0 s long by its header"),
        ("huge", "possible decompression bomb"),
        (audio_only, "holds no video stream"),
        (lambda p: p.write_bytes(b"\x1aE\xdf\xa3 truncated") and p, "not a readable video"),
    ],
)
def test_cli_bad_video_names_row_column_and_problem(cli, motion, huge_video, tmp_path, make, needle):
    root, train, _ = motion
    table = train.head(40).copy()
    bad = root / f"bad_{needle.split()[0]}.mkv"
    if make == "huge":
        bad.write_bytes(huge_video)
    else:
        make(bad)
    table.loc[7, "clip"] = bad.name
    csv = tmp_path / "t.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "run"
    r = cli("fit", csv, "--label", "label", "--data-root", root, "--out", out, "--preset", "fast", "--quiet")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    msg = " ".join(r.stderr.split())
    assert "row 7" in msg and "clip" in msg and needle in msg, msg
    assert not out.exists() and not list(tmp_path.glob(".run.*"))


def test_server_takes_a_base64_video(motion, temporal_model):
    from fastapi.testclient import TestClient

    from polymodal.serving.app import create_app
    from polymodal.serving.schemas import ServeConfig

    root, _, test = motion
    rows = test.head(3)
    body = {"rows": [{"clip": base64.b64encode((root / c).read_bytes()).decode()} for c in rows["clip"]]}
    with TestClient(create_app(temporal_model, ServeConfig(max_wait_ms=1))) as client:
        r = client.post("/predict", json=body)
        assert r.status_code == 200, r.text
        assert [x["prediction"] for x in r.json()["predictions"]] == temporal_model.predict(rows).tolist()
        long = base64.b64encode(three_hour_header(root / "long.mp4").read_bytes()).decode()
        r = client.post("/predict", json={"rows": [{"clip": long}]})
        assert r.status_code == 422 and "10,801.0 s long by its header" in r.text, r.text  # the training limit
        # under the training limit (600 s) but over the server's own (60 s): refused from the header, 413
        minutes = base64.b64encode(three_hour_header(root / "minutes.mp4", seconds=90).read_bytes()).decode()
        r = client.post("/predict", json={"rows": [{"clip": minutes}]})
        assert r.status_code == 413 and "91.0 s long" in r.text and "max_video_seconds" in r.text, r.text


# ------------------------------------------------------------------------------------------------ pretrained
def tiny_videomae(folder: Path) -> Path:
    """A tiny VideoMAE (16x16 frames, 4 of them, 8x8x2 tubelets) with its image processor, as save_pretrained
    writes them; built in-process, nothing downloaded."""
    from polymodal.encoders.hf_hub import quiet_transformers

    with quiet_transformers() as tf:
        torch.manual_seed(0)
        cfg = tf.VideoMAEConfig(
            image_size=SIDE, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=16, num_hidden_layers=1,
            num_attention_heads=2, intermediate_size=32,
        )  # fmt: skip
        tf.VideoMAEModel(cfg).save_pretrained(str(folder))
        tf.VideoMAEImageProcessorPil(size={"shortest_edge": SIDE}).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_pretrained_video_backbone(motion, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("POLYMODAL_CACHE_DIR", str(tmp_path / "cache"))
    root, train, test = motion
    model = tiny_videomae(tmp_path / "videomae")
    cfg = {
        "training": {"max_epochs": 2, "batch_size": 16},
        "encoders": {"video": {"name": "hf_video", "model": str(model), "mode": mode, "dim": 16}},
    }
    p = Predictor("label", config=cfg, data_root=root, preset="fast", seed=0, verbose=False).fit(train.head(48))
    proc = p.pipeline.processors["clip"]
    assert (proc.frames, proc.size) == (4, SIDE)
    batch = proc.collate([proc.load(c, LoadContext(root, LIMITS)) for c in train["clip"][:2]] + [None], train=False)
    assert batch["clip.pixel_values"].shape == (3, 4, 3, SIDE, SIDE) and batch["clip.key"].shape == (3, 2)
    encoder = p.pipeline.model.encoders["clip"]
    out = encoder(batch, torch.tensor([True, True, False]))
    assert out.tokens.shape == (3, 2 * 2 * 2, 16)  # (4 frames / tubelets of 2) x 2 x 2 patches
    assert torch.all(out.pooled[2] == 0), "an absent clip encodes to zeros"
    p.save(tmp_path / "run")
    loaded = Predictor.load(tmp_path / "run", verbose=False)
    rows = test.drop(columns="label").head(8)
    np.testing.assert_allclose(
        loaded.predict_proba(rows, data_root=root).to_numpy(), p.predict_proba(rows).to_numpy(), atol=1e-5
    )


# ------------------------------------------------------------------------------------------------ explain, report, export
@pytest.mark.parametrize("method", ["occlusion", "integrated_gradients"])
def test_explanations_score_every_frame(motion, temporal_model, tmp_path, method):
    from polymodal.explain import explain, write_explanations

    root, _, test = motion
    rows = test.head(2).copy()
    rows.loc[rows.index[1], "clip"] = None
    ex = explain(temporal_model, rows, method=method, data_root=root)
    a = ex[0].attributions["clip"]
    assert a.kind == "video" and a.scores.shape == (FRAMES,) and np.all(np.isfinite(a.scores))
    assert a.background is not None and a.background.shape == (FRAMES, SIDE, SIDE, 3)
    assert np.abs(a.scores).sum() > 0 and a.share == pytest.approx(1.0)
    assert not ex[1].attributions["clip"].present and ex[1].attributions["clip"].scores.shape == (0,)
    written = write_explanations(tmp_path / "ex", ex)
    assert {p.name for p in written} >= {"explanations.json", "row_0.png", "row_1.png"}


def test_report_with_video_explanations_and_robustness(motion, temporal_model, tmp_path):
    from polymodal.reporting.build import report

    root, _, test = motion
    table = root / "report_test.csv"
    test.head(24).to_csv(table, index=False)
    m = temporal_model.evaluate(table, data_root=root, robustness=True, robustness_out=tmp_path / "rob")
    assert "robustness" in m
    out = tmp_path / "report.html"
    report(temporal_model, table, out, n_examples=2, n_bootstrap=20, robustness=tmp_path / "rob" / "robustness.json")
    html = out.read_text()
    assert "frame_drop" in html, "the robustness section sweeps the video corruptions"
    assert html.count("<img") >= 3, "figures, the example explanations among them"


def test_onnx_export_parity_on_video_rows(motion, temporal_model, tmp_path):
    from polymodal.export.export import export_run

    root, _, test = motion
    temporal_model.save(tmp_path / "run")
    table = root / "export_test.csv"
    test.head(12).to_csv(table, index=False)
    result = export_run(tmp_path / "run", tmp_path / "exported", data=table, data_root=root)
    assert result.signature.inputs == ("clip", "clip.frames")
    (parity,) = result.parity.values()
    assert parity.rows == 12 and parity.agreement == 1.0 and parity.max_abs_diff < 1e-4


# ------------------------------------------------------------------------------------------------ the audio track
def test_a_clips_audio_track_as_an_audio_column(tmp_path):
    """A copy of the video column set to kind audio reads each clip's sound track: two modalities of one file."""
    from polymodal.data import loaders

    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        high = bool(i % 2)
        tone = np.sin(2 * np.pi * (880 if high else 220) * np.arange(8000) / 16000).astype(np.float32)
        write_video(tmp_path / f"s{i}.mp4", moving_square(bool(rng.integers(2)), 0, 4), 8, audio=0.5 * tone)
        rows.append({"clip": f"s{i}.mp4", "sound": f"s{i}.mp4", "label": "high" if high else "low"})
    table = pd.DataFrame(rows)
    assert loaders.audio_info(tmp_path / "s0.mp4", LIMITS) == (16000, pytest.approx(0.5, abs=0.05))
    wave = loaders.load_audio(tmp_path / "s0.mp4", LIMITS, 8000)
    assert wave.dtype == np.float32 and 0.4 < np.abs(wave).max() < 0.6
    with pytest.raises(LoadError, match="no audio track"):
        loaders.audio_info(write_video(tmp_path / "mute.mp4", moving_square(True, 0, 0), 8), LIMITS)
    with pytest.raises(LoadError, match="audio track is 0.5 s long, over the limit of 0.1 s"):
        loaders.load_audio(tmp_path / "s0.mp4", LimitsConfig(max_audio_seconds=0.1), 8000)
    cfg = {**tiny_video_config(max_epochs=2), "columns": {"sound": "audio"}}
    cfg["encoders"]["audio"] = {"name": "audio_cnn", "width": 8, "dim": 16, "stages": 2}
    p = Predictor("label", config=cfg, data_root=tmp_path, preset="fast", seed=0, verbose=False).fit(table)
    assert {m.name: m.kind for m in p.pipeline.modalities} == {"clip": "video", "sound": "audio"}
    assert len(p.predict(table.drop(columns="label"))) == 24
