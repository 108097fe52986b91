"""Writing small video clips (generated demo data, tests): :func:`write_video`. Reading is
:mod:`polymodal.data.video`'s job; this module sits low in the layers so that :mod:`polymodal.datasets` can use it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

from .io import atomic_file

_CODECS = {".mp4": "mpeg4", ".mov": "mpeg4", ".avi": "mpeg4", ".mkv": "mpeg4", ".webm": "libvpx"}
_FORMATS = {".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".mkv": "matroska", ".webm": "webm"}
_AUDIO_CODECS = {".mp4": "aac", ".mov": "aac", ".mkv": "aac", ".avi": "pcm_s16le", ".webm": "libopus"}


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 16_000,
) -> Path:
    """Write uint8 RGB ``frames`` ``[T, H, W, 3]`` (H and W even) as a video file; the codec follows the extension
    (MPEG-4 Part 2 for .mp4/.mov/.avi/.mkv, VP8 for .webm, both encoders of PyAV's bundled FFmpeg). ``audio``: an
    optional mono float waveform in [-1, 1] written as the file's audio track (AAC; PCM in .avi; Opus at 48 kHz in
    .webm, to which it is resampled by FFmpeg). For generated data and tests: small clips, written in one go
    and atomically (a failed write leaves no file)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _CODECS:
        raise ValueError(f"cannot write a video to '{path.name}': use one of {', '.join(sorted(_CODECS))}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frame height and width must be even (yuv420p), got {frames.shape[1]}x{frames.shape[2]}")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_file(path, "wb") as f, av.open(f, mode="w", format=_FORMATS[ext]) as out:
        stream = cast("av.video.stream.VideoStream", out.add_stream(_CODECS[ext], rate=rate))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        # tiny clips of flat shapes: a high bit rate keeps edges sharp enough for a motion task
        stream.bit_rate = 4_000_000
        astream = None
        if audio is not None:
            arate = 48_000 if ext == ".webm" else sample_rate
            astream = cast("av.audio.stream.AudioStream", out.add_stream(_AUDIO_CODECS[ext], rate=arate))
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None and audio is not None:
            _write_audio(out, astream, np.asarray(audio, dtype=np.float32), sample_rate)
    return path


def _write_audio(
    out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, wave: np.ndarray, sr: int
) -> None:
    ctx = stream.codec_context
    # the resampler hands the encoder frames of exactly the size it takes (AAC, Opus: fixed frame sizes)
    resampler = av.AudioResampler(format=ctx.format, layout="mono", rate=ctx.rate, frame_size=ctx.frame_size or None)
    chunk, pts = 1024, 0
    for start in range(0, len(wave), chunk):
        piece = wave[start : start + chunk][None]
        frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
        frame.sample_rate, frame.pts = sr, pts
        pts += piece.shape[1]
        for f in resampler.resample(frame):
            for packet in stream.encode(f):
                out.mux(packet)
    for f in resampler.resample(None):
        for packet in stream.encode(f):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
