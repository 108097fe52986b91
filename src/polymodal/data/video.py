"""Video files: probe the header, decode a bounded number of frames, write small clips (for generated data and tests).

Decoding uses PyAV (the ``av`` package, which ships its own FFmpeg libraries). Every limit that can be read from the
container header (duration, frame size, frame count, file size) is checked before a single frame is decoded, so a
3-hour or 100-megapixel header costs nothing; what a header can hide (a frame count it does not declare) is bounded
while decoding by ``limits.max_video_frames``. Every failure is a :class:`LoadError`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..config import LimitsConfig
from ..errors import LoadError
from ..schema import VIDEO_EXTENSIONS
from ..video_io import write_video
from .loaders import InMemoryFile, Source, _check_size, _reason

__all__ = ["VIDEO_EXTENSIONS", "VideoInfo", "load_track", "load_video", "track_info", "video_info", "write_video"]


@dataclass(frozen=True)
class VideoInfo:
    """What the container header declares. ``frames`` is 0 when the header does not say (webm, some mkv)."""

    width: int
    height: int
    seconds: float
    frames: int
    fps: float


def _container(source: Source) -> av.container.InputContainer:
    target = io.BytesIO(source.data) if isinstance(source, InMemoryFile) else str(source)
    try:
        return av.open(target, mode="r", metadata_errors="ignore")
    except Exception as e:  # FFmpeg fails on hostile files in many ways: each is a fact about this one file
        raise LoadError(f"not a readable video: {_reason(e, source) or type(e).__name__}") from None


def _seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _check_header(info: VideoInfo, limits: LimitsConfig) -> None:
    if info.width <= 0 or info.height <= 0:
        raise LoadError(f"video header declares a frame size of {info.width}x{info.height}: the file is corrupt")
    pixels = info.width * info.height
    if pixels > limits.max_video_pixels:
        raise LoadError(
            f"video frames are {info.width}x{info.height} = {pixels:,} pixels, over the limit of "
            f"{limits.max_video_pixels:,} (possible decompression bomb; raise limits.max_video_pixels if it is genuine)"
        )
    if info.seconds > limits.max_video_seconds:
        raise LoadError(
            f"video is {info.seconds:,.1f} s long by its header, over the limit of {limits.max_video_seconds:g} s "
            "(limits.max_video_seconds); cut the clip or raise the limit"
        )
    if info.frames > limits.max_video_frames:
        raise LoadError(
            f"video holds {info.frames:,} frames by its header, over the limit of {limits.max_video_frames:,} "
            "(limits.max_video_frames)"
        )


def video_info(source: Source, limits: LimitsConfig) -> VideoInfo:
    """The header's frame size, duration, frame count and rate, with the limits checked; nothing is decoded."""
    _check_size(source, limits)
    with _container(source) as container:
        info = _info(container)
    _check_header(info, limits)
    return info


def _info(container: av.container.InputContainer) -> VideoInfo:
    if not container.streams.video:
        kinds = sorted({str(s.type) for s in container.streams})
        raise LoadError(f"file holds no video stream (it has: {', '.join(kinds) or 'no streams at all'})")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None:  # FFmpeg knows no decoder for the stream's codec id (a damaged or exotic header)
        raise LoadError("the video stream's codec is unknown to FFmpeg: no decoder for it (corrupt or exotic file)")
    rate = stream.average_rate or stream.guessed_rate
    return VideoInfo(
        width=int(ctx.width or 0),
        height=int(ctx.height or 0),
        seconds=_seconds(container, stream),
        frames=int(stream.frames or 0),
        fps=float(rate) if rate else 0.0,
    )


def load_video(source: Source, limits: LimitsConfig, frames: int, size: int) -> np.ndarray:
    """Up to ``frames`` frames sampled uniformly over the clip, each resized to ``size`` x ``size`` RGB: uint8
    ``[T, 3, size, size]`` with ``T <= frames`` (a shorter clip gives all of its frames, in order).

    Frames are decoded in order and thinned as they come (every frame kept, then every second once ``2 * frames``
    are held, ...), so memory stays bounded whatever the clip's length and whether or not the header counts its
    frames; only the kept frames are converted and resized."""
    _check_size(source, limits)
    with _container(source) as container:
        info = _info(container)
        _check_header(info, limits)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        kept: list[np.ndarray] = []
        stride, decoded = 1, 0
        try:
            for frame in container.decode(stream):
                if frame.width * frame.height > limits.max_video_pixels:  # a frame may change size mid-stream
                    raise LoadError(
                        f"video frame {decoded} is {frame.width}x{frame.height}, over the limit of "
                        f"{limits.max_video_pixels:,} pixels (limits.max_video_pixels)"
                    )
                if decoded % stride == 0:
                    kept.append(frame.to_ndarray(width=size, height=size, format="rgb24"))
                    if len(kept) >= 2 * frames:
                        kept, stride = kept[::2], stride * 2
                decoded += 1
                if decoded > limits.max_video_frames:
                    raise LoadError(
                        f"video holds more than {limits.max_video_frames:,} frames (limits.max_video_frames); "
                        "its header did not say"
                    )
        except LoadError:
            raise
        except Exception as e:  # a truncated or corrupt stream: FFmpeg's own message
            raise LoadError(f"video is corrupt or truncated: {_reason(e, source) or type(e).__name__}") from None
    if not kept:
        raise LoadError("video stream holds no decodable frame (corrupt or truncated file)")
    pick = np.unique(np.linspace(0, len(kept) - 1, min(frames, len(kept))).round().astype(int))
    return np.ascontiguousarray(np.stack([kept[i] for i in pick]).transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------------------------ the audio track
def has_video_suffix(source: Source) -> bool:
    """Whether ``source`` is named like a video container (an upload by the name it was sent with)."""
    name = source.name if isinstance(source, InMemoryFile) else str(source)
    return Path(name).suffix.lower() in VIDEO_EXTENSIONS


def track_info(source: Source, limits: LimitsConfig) -> tuple[int, float]:
    """(sample rate, seconds) of a video file's first audio track, from the header, with the audio limits checked:
    what :func:`polymodal.data.loaders.audio_info` answers for a video file (a column of clips read as audio)."""
    _check_size(source, limits)
    with _container(source) as container:
        if not container.streams.audio:
            raise LoadError("video file holds no audio track")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0) if stream.codec_context else 0
        if rate <= 0:
            raise LoadError("the video's audio track declares no sample rate (corrupt file)")
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
        seconds = seconds or (container.duration or 0) / av.time_base
    if seconds > limits.max_audio_seconds:
        raise LoadError(
            f"the video's audio track is {seconds:.1f} s long, over the limit of {limits.max_audio_seconds:g} s "
            "(limits.max_audio_seconds)"
        )
    return rate, seconds


def load_track(source: Source, limits: LimitsConfig, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """A video file's first audio track as mono float32 at ``sample_rate`` (FFmpeg resamples), the first
    ``max_seconds`` only when given: what :func:`polymodal.data.loaders.load_audio` returns for a video file."""
    track_info(source, limits)
    limit = None if max_seconds is None else int(max_seconds * sample_rate) + 1
    pieces: list[np.ndarray] = []
    got = 0
    try:
        with _container(source) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
                    got += len(pieces[-1])
                if limit is not None and got >= limit:
                    break
            else:
                pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except LoadError:
        raise
    except Exception as e:  # a truncated or corrupt stream: FFmpeg's own message
        reason = _reason(e, source) or type(e).__name__
        raise LoadError(f"the video's audio track is corrupt or truncated: {reason}") from None
    wave = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if limit is not None:
        wave = wave[:limit]
    if wave.size == 0:
        raise LoadError("the video's audio track holds no samples")
    if not np.all(np.isfinite(wave)):
        raise LoadError("the video's audio track holds NaN or infinite samples")
    return np.ascontiguousarray(wave, dtype=np.float32)
