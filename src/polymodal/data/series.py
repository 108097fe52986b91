"""Decode one time series (a ``.npy``/``.csv``/``.parquet`` file or an inline array) under safety limits.

A series is returned as float32 ``[steps, channels]``. Every failure is a :class:`LoadError` with a plain message.
NaN and infinite values are kept as NaN here: the processor applies the recorded rule (forward-fill per channel
plus a missing-share channel, see :class:`polymodal.data.timeseries.TimeSeriesProcessor`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import LimitsConfig
from ..errors import LoadError
from .loaders import InMemoryFile, Source, _check_size, _reason

SERIES_EXTENSIONS = (".npy", ".csv", ".parquet")


def is_inline(value: Any) -> bool:
    """True for a cell that holds the series itself (an array, list or JSON array string), not a file path."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return True
    return isinstance(value, str) and value.lstrip().startswith("[")


def _suffix(source: Source) -> str:
    name = source.name if isinstance(source, InMemoryFile) else str(source)
    return Path(name).suffix.lower()


def _check_shape(steps: int, channels: int, limits: LimitsConfig) -> None:
    if steps == 0 or channels == 0:
        raise LoadError(f"time series is empty ({steps} steps x {channels} channels): a series needs at least 1 step")
    if steps > limits.max_series_steps:
        raise LoadError(
            f"time series has {steps:,} steps, over the limit of {limits.max_series_steps:,} (limits.max_series_steps)"
        )
    if channels > limits.max_series_channels:
        raise LoadError(
            f"time series has {channels:,} channels, over the limit of {limits.max_series_channels:,} "
            "(limits.max_series_channels)"
        )


def _as_2d(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise LoadError(f"{what} has {arr.ndim} dimensions; a series is steps (T) or steps x channels (T x C)")
    return arr


def _to_float(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise LoadError(f"{what} holds {arr.dtype} values, not numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    out[~np.isfinite(out)] = np.nan  # inf (or a float64 beyond float32) is treated as a missing value
    return out


def _load_npy(source: Source, limits: LimitsConfig) -> np.ndarray:
    # The header is read first: its shape is checked before any data is (a tiny file may declare 10^12 steps).
    f = io.BytesIO(source.data) if isinstance(source, InMemoryFile) else open(source, "rb")  # noqa: SIM115
    try:
        with f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else _read_header_2
            shape, _, dtype = read_header(f)
            if dtype.hasobject:
                raise LoadError("the .npy file holds Python objects (pickled); save a numeric array instead")
            if len(shape) not in (1, 2):
                raise LoadError(f".npy array has shape {shape}; a series is steps (T) or steps x channels (T x C)")
            _check_shape(shape[0], shape[1] if len(shape) == 2 else 1, limits)
            f.seek(0)
            arr = np.load(f, allow_pickle=False)
    except LoadError:
        raise
    except Exception as e:  # a truncated or corrupt file: whatever numpy raises is a fact about this one file
        raise LoadError(f"not a readable .npy file: {_reason(e, source) or type(e).__name__}") from None
    return _to_float(_as_2d(np.asarray(arr), ".npy array"), ".npy array")


def _read_header_2(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    # versions 2.0 and 3.0 differ in the header's text encoding only, which numpy's reader handles for both
    return np.lib.format.read_array_header_2_0(f)


def _numeric_frame(frame: pd.DataFrame, what: str) -> np.ndarray:
    values = frame.apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & frame.notna() & (frame.astype(str).apply(lambda c: c.str.strip()) != "")
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise LoadError(
            f"{what}: step {r} of channel '{frame.columns[c]}' is {str(frame.iat[r, c])[:40]!r}, not a number"
        )
    return values.to_numpy(dtype=np.float64)


def _load_csv(source: Source, limits: LimitsConfig) -> np.ndarray:
    try:
        frame = pd.read_csv(
            io.BytesIO(source.data) if isinstance(source, InMemoryFile) else source, header=None, dtype=str
        )
    except pd.errors.EmptyDataError:
        raise LoadError("time series is empty (0 steps): the .csv file holds no rows") from None
    except Exception as e:
        raise LoadError(f"not a readable .csv file: {_reason(e, source) or type(e).__name__}") from None
    if len(frame) and pd.to_numeric(frame.iloc[0], errors="coerce").isna().all():
        frame = frame.iloc[1:].reset_index(drop=True)  # a header row: channel names
    _check_shape(len(frame), frame.shape[1], limits)
    return _to_float(_numeric_frame(frame, ".csv series"), ".csv series")


def _load_parquet(source: Source, limits: LimitsConfig) -> np.ndarray:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    try:
        pf = pq.ParquetFile(io.BytesIO(source.data) if isinstance(source, InMemoryFile) else source)
        _check_shape(pf.metadata.num_rows, pf.metadata.num_columns, limits)
        frame = pf.read().to_pandas()
    except LoadError:
        raise
    except Exception as e:
        raise LoadError(f"not a readable .parquet file: {_reason(e, source) or type(e).__name__}") from None
    return _to_float(_numeric_frame(frame, ".parquet series"), ".parquet series")


_FILE_LOADERS = {".npy": _load_npy, ".csv": _load_csv, ".parquet": _load_parquet}


def load_inline(value: Any, limits: LimitsConfig) -> np.ndarray:
    """A series written in the cell: a list/array, or a JSON array (``[1, 2, 3]`` or ``[[1, 2], [3, 4]]``)."""
    if isinstance(value, str):
        if len(value) > limits.max_file_bytes:
            raise LoadError(
                f"inline series is {len(value):,} characters, over the limit of {limits.max_file_bytes:,} "
                "(limits.max_file_bytes)"
            )
        try:
            value = json.loads(value)
        except ValueError as e:
            raise LoadError(f"inline series is not valid JSON: {e}") from None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
        value = [v.tolist() for v in value]  # a Parquet list-of-lists cell arrives as an array of arrays
    try:
        arr = np.asarray([np.nan if v is None else v for v in value] if isinstance(value, list) else value)
        if arr.dtype == object:  # nested lists with None inside
            arr = np.asarray([[np.nan if x is None else x for x in r] for r in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise LoadError("inline series is not a rectangular array of numbers (steps, or steps x channels)") from None
    if arr.size == 0:
        raise LoadError("time series is empty (0 steps): the inline array holds no values")
    arr = _as_2d(arr, "inline series")
    _check_shape(arr.shape[0], arr.shape[1], limits)
    return _to_float(arr, "inline series")


def load_series_file(source: Source, limits: LimitsConfig) -> np.ndarray:
    """A series file (``.npy``, ``.csv``, ``.parquet``) as float32 ``[steps, channels]``, NaN where missing."""
    _check_size(source, limits)
    loader = _FILE_LOADERS.get(_suffix(source))
    if loader is None:
        raise LoadError(
            f"'{_suffix(source) or 'no extension'}' is not a time-series file; use "
            f"{'/'.join(SERIES_EXTENSIONS)} or an inline JSON array"
        )
    return loader(source, limits)
