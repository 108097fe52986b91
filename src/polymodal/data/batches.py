"""Read a table in chunks of rows, so that a table larger than memory can be predicted and evaluated.

:func:`iter_table` yields :class:`~polymodal.data.readers.Table` chunks with the same columns, types and errors as
:func:`~polymodal.data.readers.read_table` gives for the whole table (the same pandas parsers, read in chunks;
Parquet through ``pyarrow.parquet.ParquetFile.iter_batches``). Chunk k's index continues chunk k-1's, so that the
rows keep the numbers they have in the whole table and predictions align with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError
from .cells import media_cells
from .readers import (
    SUFFIXES,
    Table,
    check_arrow_columns,
    check_record_columns,
    check_unique_columns,
    csv_header_names,
    folder_of,
    parquet_files,
    read_table,
    short,
    table_kind,
    utf8_error,
)

#: Rows per chunk by default: a chunk's decoded items live in memory together (at 224x224 RGB, 8,192 images are
#: about 1.2 GB of uint8), while each chunk costs only a loader set-up, negligible next to decoding its rows.
DEFAULT_CHUNK_ROWS = 8192


def iter_table(data: Any, data_root: "str | Path | None" = None, chunk_rows: int | None = None) -> Iterator[Table]:
    """Yield ``data`` as :class:`Table` chunks of at most ``chunk_rows`` rows (default :data:`DEFAULT_CHUNK_ROWS`).

    A DataFrame or Table is sliced (its own index kept); a CSV/TSV/JSONL/Parquet file is read chunk by chunk, so
    that no more than one chunk of it is in memory; a JSON array file (not streamable) is read whole and sliced. At
    least one chunk is yielded (an empty table gives one empty chunk). Raises :class:`DataError` as ``read_table``
    does (a missing file, an unknown format, invalid UTF-8 with its offset and line, duplicate columns), possibly
    after earlier chunks were yielded.
    """
    n = DEFAULT_CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
    if n < 1:
        raise DataError(f"chunk_rows must be at least 1, not {chunk_rows}", hint="Pass a positive number of rows.")
    if not isinstance(data, (str, Path)):  # a DataFrame, a Table, or a table of another library (data/cells.py)
        yield from _slices(read_table(data, data_root), n)
        return
    files = parquet_files(data)
    frames: Iterator[pd.DataFrame]
    if files is not None:  # a folder or glob of Parquet files: chunks of each file in turn
        root = (Path(data_root) if data_root is not None else folder_of(str(data), files)).resolve()
        frames = _rechunk((frame for f in files for frame in _parquet_frames(f, n)), n)
    else:
        path = Path(data)
        kind = table_kind(path)
        root = (Path(data_root) if data_root is not None else path.parent).resolve()
        if kind == "json":
            yield from _slices(read_table(path, data_root), n)
            return
        frames = _parquet_frames(path, n) if kind == "parquet" else _text_frames(path, kind, n)
    start = 0
    for frame in frames:
        frame = media_cells(frame)
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield Table(frame, root, str(data))


def table_rows(data: Any) -> int | None:
    """The number of rows of ``data`` for a progress bar: exact for a frame or a Parquet file (its metadata), the
    number of lines for a CSV/TSV/JSONL file (a quoted value may span lines), None when unknown."""
    if isinstance(data, Table):
        return len(data.frame)
    if isinstance(data, pd.DataFrame):
        return len(data)
    if not isinstance(data, (str, Path)):  # a Hugging Face Dataset, a Polars frame (a LazyFrame has no length)
        try:
            return len(data)
        except TypeError:
            return None
    path = Path(data)
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception:  # an unreadable file: the reader reports it
            return None
    kind = SUFFIXES.get(path.suffix.lower())
    if kind in ("csv", "tsv", "jsonl") and path.is_file():
        lines, last = 0, b"\n"
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"  # a last line without a newline
        return max(lines - (kind != "jsonl"), 0)  # less the header
    return None


def _rechunk(frames: Iterator[pd.DataFrame], n: int) -> Iterator[pd.DataFrame]:
    """``frames`` (each file's chunks, in turn) regrouped into chunks of exactly ``n`` rows but the last, as one
    file of the same rows would be read: a chunk's rows are predicted together, so equal chunks give equal
    numbers."""
    pending: list[pd.DataFrame] = []
    size, yielded, empty = 0, False, None
    for frame in frames:
        empty = frame.iloc[:0] if empty is None else empty
        while len(frame):
            take = frame.iloc[: n - size]
            frame = frame.iloc[len(take) :]
            pending.append(take)
            size += len(take)
            if size == n:
                yield pd.concat(pending, ignore_index=True)
                pending, size, yielded = [], 0, True
    if pending:
        yield pd.concat(pending, ignore_index=True)
    elif not yielded and empty is not None:  # files with a header and no rows: one empty chunk, as for one file
        yield empty


def _slices(table: Table, n: int) -> Iterator[Table]:
    frame = table.frame
    for i in range(0, max(len(frame), 1), n):
        yield Table(frame.iloc[i : i + n], table.root, table.source)


def _text_frames(path: Path, kind: str, n: int) -> Iterator[pd.DataFrame]:
    """CSV/TSV/JSONL chunks through pandas' own chunked readers (the parsers ``read_table`` uses)."""
    first = True
    try:
        if kind in ("csv", "tsv"):
            names = csv_header_names(path, kind)
            check_unique_columns(names, str(path))
            reader: Any = pd.read_csv(path, sep="," if kind == "csv" else "\t", encoding="utf-8", chunksize=n)
        else:
            reader = pd.read_json(path, lines=True, encoding="utf-8", chunksize=n)
        with reader:
            for frame in reader:
                if first:
                    check_unique_columns(list(frame.columns), str(path))
                if kind == "jsonl":
                    check_record_columns(frame, path, kind)
                first = False
                yield frame
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise utf8_error(path, e) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"table {path} is empty: it has no header and no rows") from None
    except Exception as e:
        raise DataError(f"cannot parse {path} as {kind}: {short(str(e)) or type(e).__name__}") from None
    if first:  # a header and no rows: one empty chunk with the header's columns, as read_table gives
        yield read_table(path).frame


def _parquet_frames(path: Path, n: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
        schema = pfile.schema_arrow
        # a frame written with its index stores it as a column; pd.read_parquet restores it as the index, which
        # read_table then drops: leave it out here
        index_columns = set(_pandas_index_columns(schema))
        columns = [c for c in schema.names if c not in index_columns]
        first = True
        for batch in pfile.iter_batches(batch_size=n, columns=columns):
            frame = batch.to_pandas()
            if first:
                check_unique_columns(list(frame.columns), str(path))
            first = False
            check_arrow_columns(frame, path)
            yield frame.reset_index(drop=True)
        if first:
            yield schema.empty_table().select(columns).to_pandas()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"cannot parse {path} as parquet: {short(str(e)) or type(e).__name__}") from None


def _pandas_index_columns(schema: object) -> list[str]:
    import json

    meta = getattr(schema, "pandas_metadata", None) or {}
    if not meta:
        raw = (getattr(schema, "metadata", None) or {}).get(b"pandas")
        meta = json.loads(raw) if raw else {}
    return [c for c in meta.get("index_columns", []) if isinstance(c, str)]
