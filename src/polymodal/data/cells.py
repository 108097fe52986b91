"""Tables from other libraries, and media held inside table cells.

Two jobs, both done as a table is read (:func:`polymodal.data.readers.read_table` and the chunked reader), so that
schema inference, the loader limits and the sample store see one kind of cell:

* :func:`foreign_frame`: a Hugging Face ``datasets.Dataset`` (or a ``DatasetDict`` with one split), a Polars
  ``DataFrame`` / ``LazyFrame`` becomes a pandas DataFrame. A ``Dataset`` is converted from its Arrow storage
  (``to_pandas``), so ``Image`` and ``Audio`` features arrive as ``{"bytes": ..., "path": ...}`` structs whether the
  dataset decodes them or not.
* :func:`media_cells`: image and audio content inside cells becomes :class:`~polymodal.data.loaders.InMemoryFile`,
  decoded by the same loaders under the same limits (bytes, pixels, seconds) as a file on disk. A cell may be
  ``{"bytes": b"...", "path": "a.png"}`` (the common Parquet layout and Hugging Face's storage; with no bytes, the
  path is used as a path), raw bytes (PNG, JPEG, GIF, BMP, TIFF, WebP; WAV, FLAC, Ogg, MP3, AIFF: recognised by their
  first bytes), a decoded Pillow image (stored as PNG, lossless) or a decoded audio dict
  ``{"array": ..., "sampling_rate": ...}`` (stored as 32-bit float WAV, lossless).

Each in-memory cell's sample-store key is a hash of its content (``InMemoryFile.cache``), as a file's is its path,
size and modification time.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from ..schema import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from .loaders import InMemoryFile

#: cells looked at to decide whether a column holds media
_PROBE = 50

#: (offset, magic bytes, suffix): the formats the image and audio loaders decode
_MAGIC: list[tuple[int, bytes, str]] = [
    (0, b"\x89PNG\r\n\x1a\n", ".png"),
    (0, b"\xff\xd8\xff", ".jpg"),
    (0, b"GIF87a", ".gif"),
    (0, b"GIF89a", ".gif"),
    (0, b"II*\x00", ".tif"),
    (0, b"MM\x00*", ".tif"),
    (8, b"WEBP", ".webp"),
    (8, b"WAVE", ".wav"),
    (0, b"fLaC", ".flac"),
    (0, b"OggS", ".ogg"),
    (0, b"ID3", ".mp3"),
    (8, b"AIFF", ".aiff"),
    (8, b"AIFC", ".aiff"),
    (0, b"BM", ".bmp"),  # two bytes only: last, so that a longer signature wins
]
_MEDIA_SUFFIXES = IMAGE_EXTENSIONS | AUDIO_EXTENSIONS


def sniff(data: bytes) -> str | None:
    """The file suffix the content of ``data`` starts like (".png", ".wav", ...), or None."""
    head = bytes(data[:16])
    for offset, magic, suffix in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if (suffix == ".wav" and head[:4] != b"RIFF") or (suffix == ".webp" and head[:4] != b"RIFF"):
                continue
            return suffix
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame without an ID3 tag
        return ".mp3"
    return None


# ------------------------------------------------------------------------------------------- other libraries
def foreign_frame(data: Any) -> pd.DataFrame | None:
    """``data`` as a pandas DataFrame when it is a table of another library (Hugging Face datasets, Polars), else
    None. Checked by the type's module, so neither library is imported for an ordinary table."""
    module = type(data).__module__.split(".", 1)[0]
    if module == "datasets":
        return _hf_frame(data)
    if module == "polars":
        if hasattr(data, "collect") and not hasattr(data, "to_pandas"):  # a LazyFrame
            data = data.collect()
        try:
            return data.to_pandas()
        except ModuleNotFoundError as e:
            raise DataError(
                f"cannot convert the Polars table: {e}", hint="Install pyarrow (`pip install 'polymodal[inputs]'`)."
            ) from None
    return None


def _hf_frame(data: Any) -> pd.DataFrame:
    if type(data).__name__ in ("DatasetDict", "IterableDatasetDict"):
        splits = list(data.keys())
        if len(splits) != 1:
            raise DataError(
                f"a DatasetDict holds several splits ({', '.join(splits)}): which one to read is not a guess",
                hint="Pass one split, e.g. fit(ds['train'], tuning_data=ds['validation']) and predict(ds['test']).",
            )
        data = data[splits[0]]
    if not hasattr(data, "to_pandas"):  # an IterableDataset streams: polymodal reads whole tables
        raise DataError(
            f"cannot read a {type(data).__name__}: polymodal reads a table it can index",
            hint="Load the dataset without streaming=True, or take rows first (Dataset.from_list(list(ds.take(n)))).",
        )
    frame = data.to_pandas()  # Arrow storage: Image/Audio features as {"bytes", "path"} structs, not decoded
    if not isinstance(frame, pd.DataFrame):  # to_pandas(batched=True) would be an iterator; ours is not
        frame = pd.concat(list(frame), ignore_index=True)
    return frame


# ------------------------------------------------------------------------------------------- media cells
def media_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every column of in-cell media turned into :class:`InMemoryFile` cells (and path-only structs
    into paths); other columns, and the caller's frame, are left as they are."""
    converted: dict[Any, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        suffix = _media_column(column)
        if suffix is not None:
            converted[name] = column.map(lambda v, s=suffix: _cell(v, s))
    if not converted:
        return frame
    out = frame.copy(deep=False)
    for name, values in converted.items():
        out[name] = values.astype(object)
    return out


def _media_column(column: pd.Series) -> str | None:
    """The suffix to name a column's undetected cells by, when its first cells hold media; else None. Raw bytes
    count only when most of them are recognised media (bytes may be text)."""
    probes = [v for v in column.iloc[: _PROBE * 4].tolist() if v is not None and not _is_nan(v)][:_PROBE]
    kinds = [_kind_of(v) for v in probes]
    found = [k for k in kinds if k not in (None, "bytes?")]
    if not found:
        return None
    raw = sum(1 for v in probes if isinstance(v, (bytes, bytearray, memoryview)))
    if raw and len(found) < 0.8 * len(probes):
        return None
    return max(set(found), key=found.count)


def _kind_of(value: Any) -> str | None:
    """The suffix of one cell's media (".png", ".wav"; "" for a struct that names no format), "bytes?" for
    bytes that are no known format, None for a cell that holds no media."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return sniff(bytes(value[:16])) or "bytes?"
    if isinstance(value, Mapping):
        if "array" in value and "sampling_rate" in value:
            return ".wav"
        if "bytes" in value:
            data, path = value.get("bytes"), value.get("path")
            if isinstance(data, (bytes, bytearray, memoryview)):
                return sniff(bytes(data[:16])) or _suffix(path) or ""
            return _suffix(path) or ("" if data is None and path is None else None)
        return None
    if _is_pil(value):
        return ".png"
    return None


def _suffix(path: Any) -> str | None:
    if isinstance(path, str) and Path(path).suffix.lower() in _MEDIA_SUFFIXES:
        return Path(path).suffix.lower()
    return None


def _cell(value: Any, suffix: str) -> Any:
    """One cell as an :class:`InMemoryFile` (named by its content's format, else its path's, else the column's),
    a path string, or None for an empty struct. A struct whose bytes are not bytes becomes an empty file, and any
    other value is left as it is: decoding either then fails as a bad file of its row and column."""
    if value is None or _is_nan(value):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return InMemoryFile(data, "cell" + (sniff(data) or suffix), cache=True)
    if isinstance(value, Mapping):
        if "array" in value and "sampling_rate" in value:
            return _wav(value["array"], value["sampling_rate"], value.get("path"))
        stored, path = value.get("bytes"), value.get("path")
        if isinstance(stored, (bytes, bytearray, memoryview)):
            content = bytes(stored)
            name = Path(str(path)).name if _suffix(path) else "cell" + (sniff(content) or suffix)
            return InMemoryFile(content, name, cache=True)
        if stored is None and isinstance(path, str) and path:
            return path  # a struct pointing at a file: resolved like any path cell
        if stored is None and not path:
            return None
        return InMemoryFile(b"", "cell" + suffix)  # bytes of another type: unreadable, reported by row and column
    if _is_pil(value):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return InMemoryFile(buf.getvalue(), "image.png", cache=True)
    return value


def _wav(array: Any, rate: Any, path: Any) -> InMemoryFile:
    """A decoded audio dict as a 32-bit float WAV held in memory (lossless); an empty, unreadable file when it is
    not a 1-D or 2-D array of numbers with an integer rate (its row then fails to decode, by row and column)."""
    import soundfile as sf

    try:
        samples = np.asarray(array, dtype=np.float32)
        if samples.ndim == 2 and samples.shape[0] < samples.shape[1]:  # channels first, as decoders give it
            samples = samples.T
        buf = io.BytesIO()
        sf.write(buf, samples, int(rate), format="WAV", subtype="FLOAT")
    except Exception:  # not audio: an empty file, which the loader reports by row and column
        return InMemoryFile(b"", "not-audio.wav")
    name = (Path(path).stem if isinstance(path, str) and path else "audio") + ".wav"
    return InMemoryFile(buf.getvalue(), name, cache=True)


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "save") and hasattr(value, "size")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value
