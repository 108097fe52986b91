"""Decode one file per call, under safety limits. Every failure is a :class:`LoadError` with a plain message.

Paths come from the table: relative ones resolve against the data root; absolute and ``../`` paths are the user's
own files and are read as written, unless ``limits.confine_to_root`` asks for every path to stay inside the root.
A cell may instead hold an :class:`InMemoryFile` (the server's uploads): its bytes are decoded under the same limits
and no file system is touched. With no data root (``root=None``, the server) every path is refused.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import math
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import soundfile as sf
import soxr
from PIL import Image, ImageOps

from ..config import LimitsConfig
from ..errors import LoadError, in_terms


def is_empty(value: object) -> bool:
    """True for a cell that holds no value (None, NaN, empty or blank string): the modality is absent."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


@dataclass(frozen=True, eq=False)
class InMemoryFile:
    """A file's content held in memory (e.g. uploaded to the server); decoded like a file on disk."""

    data: bytes
    name: str = "upload"
    #: whether decoded items may go to the on-disk sample store, keyed by content (media inside a table's cells);
    #: off for the server's uploads, which are not kept on disk
    cache: bool = False

    def __repr__(self) -> str:  # never dump the bytes into a message
        return f"InMemoryFile({self.name!r}, {len(self.data):,} bytes)"

    def __str__(self) -> str:
        # Processors key their decode cache on str(cell): equal contents share one decode, as equal paths do.
        return "sha256:" + self.digest

    @functools.cached_property
    def headers(self) -> dict[str, tuple]:
        """Header fields parsed so far, by kind: the server checks a file's header before decoding it and the loader
        reads it again while decoding, so the bytes are parsed once (a few hundred microseconds per request)."""
        return {}

    @functools.cached_property
    def digest(self) -> str:
        """The SHA-256 of the content (hex), computed once."""
        return hashlib.sha256(self.data).hexdigest()


Source = Path | InMemoryFile


def _open(source: Source) -> str | IO[bytes]:
    return io.BytesIO(source.data) if isinstance(source, InMemoryFile) else str(source)


def _reason(e: Exception, source: Source) -> str:
    """The decoder's message; Pillow and libsndfile name the object they opened, which for in-memory data is a
    meaningless '<_io.BytesIO object at 0x...>': name the upload instead."""
    text = str(e)
    if isinstance(source, InMemoryFile):
        text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", f"'{source.name}'", text)
    return text


def resolve_path(value: object, root: Path | None, *, confine: bool) -> Source:
    """Resolve a table cell to an existing file; raise LoadError if it is missing or (``confine``) escapes ``root``.

    Relative paths resolve against ``root``. With ``confine`` (``limits.confine_to_root``), containment is checked on
    the normalised path (``..`` collapsed, symlinks not followed): a cell cannot climb out of the root, while a
    symlink the user placed inside the root (DVC, git-annex, shared caches) still works. An :class:`InMemoryFile` is
    returned as it is; with ``root=None`` (the server) every path is refused, confined or not.
    """
    if isinstance(value, InMemoryFile):
        return value
    if root is None:
        raise LoadError("file paths are not accepted here; send the file's content instead")
    if not isinstance(value, str):
        raise LoadError(f"expected a file path, got {type(value).__name__} {value!r}")
    try:
        root = Path(os.path.abspath(root))
        path = Path(os.path.abspath(root / value.strip()))
        if confine and not path.is_relative_to(root):
            raise LoadError(f"path '{_clip(value)}' resolves outside the data root {root}; {_escape_remedy()}")
        if not path.is_file():
            raise LoadError(f"file not found: {_clip(str(path))}")
    except (OSError, ValueError) as e:
        # A name the file system refuses (a component over 255 bytes: Errno 36, a NUL byte, ...) is one bad cell,
        # not a reason to stop the whole table.
        if isinstance(e, LoadError):
            raise
        raise LoadError(f"cannot use path '{_clip(value)}': {_os_reason(e)}") from None
    return path


def _clip(text: str, n: int = 120) -> str:
    """``text`` cut to ``n`` characters for a message (a hostile cell may be megabytes long)."""
    return text if len(text) <= n else f"{text[:n]}... ({len(text):,} characters)"


def _os_reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
        return "the name is too long for the file system (each folder or file name is limited to 255 bytes)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


def _escape_remedy() -> str:
    """What to do about a path outside a confined data root, in the caller's terms (Python or the CLI)."""
    root = in_terms("data_root=", "--data-root")
    switch = in_terms(
        "limits.confine_to_root=False in the config",
        "limits.confine_to_root: false in the config (fit's --config file, or a saved run's config.yaml)",
    )
    return (
        f"paths are confined to the data root (limits.confine_to_root is on): move the file under the data root, "
        f"pass {root} a folder that holds every file, or, for a table you trust, set {switch}"
    )


def _check_size(path: Source, limits: LimitsConfig) -> None:
    try:
        size = len(path.data) if isinstance(path, InMemoryFile) else path.stat().st_size
    except OSError as e:
        raise LoadError(f"cannot read {_clip(str(path))}: {_os_reason(e)}") from None
    if size > limits.max_file_bytes:
        raise LoadError(f"file is {size:,} bytes, over the limit of {limits.max_file_bytes:,} (limits.max_file_bytes)")


def _header(source: Source, kind: str, read: Callable[[], tuple]) -> tuple:
    """``read()``, once per in-memory file and ``kind`` (see :attr:`InMemoryFile.headers`); files on disk are read
    every time (they may change)."""
    if not isinstance(source, InMemoryFile):
        return read()
    memo = source.headers
    if kind not in memo:
        memo[kind] = read()
    return memo[kind]


def _read_image_header(path: Source) -> tuple[int, int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(_open(path)) as im:
            return im.size[0], im.size[1], im.mode


# Decoder failures: a decoder fed a hostile file fails in many ways besides its documented ones (Pillow: ValueError
# "Decompressed data too large" for a huge zTXt/iCCP chunk, struct.error, IndexError, ZeroDivisionError, ...;
# libsndfile: RuntimeError, TypeError). Whatever it raises is a fact about that one file, so every Exception from
# decoding becomes a LoadError: the row is then reported, skipped or made absent like any other unreadable file
# (--on-error).
def image_size(path: Source, limits: LimitsConfig) -> tuple[int, int, str]:
    """(width, height, mode) from the header only, with the pixel limit checked."""
    _check_size(path, limits)
    try:
        w, h, mode = _header(path, "image", lambda: _read_image_header(path))
    except Exception as e:  # see 'Decoder failures'
        raise LoadError(f"not a readable image: {_image_reason(e, path)}") from None
    if w * h > limits.max_image_pixels:
        raise LoadError(
            f"image is {w}x{h} = {w * h:,} pixels, over the limit of {limits.max_image_pixels:,} "
            "(possible decompression bomb; raise limits.max_image_pixels if it is genuine)"
        )
    return w, h, mode


def _image_reason(e: Exception, path: Source) -> str:
    text = _reason(e, path) or type(e).__name__
    if "Decompressed data too large" in text:
        text += (
            " (a compressed text or ICC-profile chunk expands past Pillow's safety limit: a decompression bomb, or a "
            "file to re-save without its metadata)"
        )
    return text


def _to_8_bits(im: Image.Image) -> Image.Image:
    """A 16/32-bit integer grayscale image (mode I;16*, I: 16-bit PNG and TIFF) scaled to 8 bits by its 16-bit
    range. Pillow's own conversion to L clips at 255, which turns almost every pixel of a 16-bit image white."""
    if not (im.mode == "I" or im.mode.startswith("I;16")):
        return im
    arr = np.asarray(im).astype(np.int64)
    return Image.fromarray((np.clip(arr, 0, 65535) >> 8).astype(np.uint8), "L")


def load_image(path: Source, limits: LimitsConfig, channels: int) -> Image.Image:
    """Open, apply EXIF orientation, convert to L (1 channel) or RGB (3), fully decoded."""
    image_size(path, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im: Image.Image  # the opened file, then the plain images that transposing and converting return
            with Image.open(_open(path)) as im:
                im = ImageOps.exif_transpose(im)
                im = _to_8_bits(im)
                if im.mode in ("RGBA", "LA", "P") and channels == 3:
                    im = im.convert("RGBA")
                    bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                    im = Image.alpha_composite(bg, im)
                im = im.convert("L" if channels == 1 else "RGB")
                im.load()
                return im
    except Exception as e:  # see 'Decoder failures'
        raise LoadError(f"image is corrupt or truncated: {_image_reason(e, path)}") from None


MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 100, 768_000  # the sample rates audio files really hold (768 kHz: studio DXD)


def audio_info(path: Source, limits: LimitsConfig) -> tuple[int, float]:
    """(sample rate, duration in seconds) from the header, with the duration limit checked. A video file (a column
    of clips read as audio) answers for its audio track."""
    from . import video  # lazily: video imports this module

    if video.has_video_suffix(path):
        return video.track_info(path, limits)
    _check_size(path, limits)
    samplerate, frames, _ = audio_header(path)
    if frames <= 0:
        raise LoadError("audio file holds no samples")
    if not MIN_SAMPLE_RATE <= samplerate <= MAX_SAMPLE_RATE:
        # A header declaring e.g. 2 GHz would be resampled to a near-silent few samples without a word.
        raise LoadError(
            f"audio header declares a sample rate of {samplerate:,} Hz, outside the plausible range "
            f"{MIN_SAMPLE_RATE:,}-{MAX_SAMPLE_RATE:,} Hz: the file is corrupt or not audio"
        )
    duration = frames / samplerate
    if duration > limits.max_audio_seconds:
        raise LoadError(
            f"audio is {duration:.1f} s long, over the limit of {limits.max_audio_seconds:g} s "
            "(limits.max_audio_seconds)"
        )
    return samplerate, duration


def audio_header(path: Source) -> tuple[int, int, int]:
    """(sample rate, frames, channels) as the audio file's header declares them, unchecked (:func:`audio_info`
    checks them against the limits)."""

    def read() -> tuple[int, int, int]:
        info = sf.info(_open(path))
        return info.samplerate, info.frames, info.channels

    try:
        return _header(path, "audio", read)
    except Exception as e:  # see 'Decoder failures'
        raise LoadError(f"not a readable audio file: {_reason(e, path) or type(e).__name__}") from None


def load_audio(path: Source, limits: LimitsConfig, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Decode to mono float32 at ``sample_rate``; only the first ``max_seconds`` are read when given."""
    from . import video  # lazily: video imports this module

    if video.has_video_suffix(path):
        return video.load_track(path, limits, sample_rate, max_seconds)
    sr, _ = audio_info(path, limits)
    frames = -1 if max_seconds is None else int(math.ceil(max_seconds * sr))
    try:
        data, sr = sf.read(_open(path), frames=frames, dtype="float32", always_2d=True)
    except Exception as e:  # see 'Decoder failures'
        raise LoadError(f"audio is corrupt or truncated: {_reason(e, path) or type(e).__name__}") from None
    if data.size == 0:
        raise LoadError("audio file holds no samples")
    if not np.all(np.isfinite(data)):
        raise LoadError("audio holds NaN or infinite samples")
    mono = data.mean(axis=1)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate).astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)
