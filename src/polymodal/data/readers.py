"""Read a table (CSV / Parquet / JSONL / pandas) and remember the folder its relative paths resolve against."""

from __future__ import annotations

import codecs
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import DataError, RowIssue
from .cells import foreign_frame, media_cells

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".json": "json",
    ".ndjson": "jsonl",
}


def check_unique_columns(names: list, source: str) -> None:
    """Refuse a table whose column names repeat: which column a name means would be a guess (pandas renames a
    repeated CSV header to ``a.1`` without a word)."""
    # an empty header cell is no name (pandas calls each one "Unnamed: i")
    counts = Counter(str(n) for n in names if not (isinstance(n, float) and n != n) and str(n) != "")
    repeated = sorted(n for n, c in counts.items() if c > 1)
    if repeated:
        raise DataError(
            f"table {source} has duplicate column names: {', '.join(repr(short(n)) for n in repeated)}",
            hint="Give every column a distinct name (rename or drop the repeats), then read the table again.",
        )


def check_arrow_columns(frame: pd.DataFrame, path: Path) -> None:
    """Refuse a Parquet file whose string data is not valid UTF-8. pandas keeps such a column as Arrow memory and
    fails only when a later step converts it (an ArrowException deep in inference or training): check it here."""
    import pyarrow as pa  # type: ignore[import-untyped]

    for name in frame.columns:
        values = frame[name].array
        if not hasattr(values, "__arrow_array__"):
            continue
        try:
            pa.array(values).validate(full=True)
        except (pa.ArrowException, ValueError) as e:
            raise DataError(
                f"cannot read {path} as parquet: column '{short(str(name), 60)}' holds invalid data ({short(str(e))})",
                hint="Re-write the file from its source (its text columns must be valid UTF-8).",
            ) from None


def short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "..."


@dataclass
class Table:
    """A table plus the directory that relative file paths in it are resolved against."""

    frame: pd.DataFrame
    root: Path
    source: str


def read_table(data: Any, data_root: "str | Path | None" = None) -> Table:
    """Read ``data`` into a :class:`Table`: a pandas or Polars DataFrame, a Hugging Face ``Dataset``, a
    :class:`Table`, a CSV/TSV/Parquet/JSONL/JSON file, or a folder or glob of Parquet files (read in name order).
    Image and audio content inside cells becomes in-memory files (:mod:`polymodal.data.cells`).

    Relative paths in the table resolve against ``data_root`` when given, else against the table file's own
    folder (or the current directory for a DataFrame).
    """
    if isinstance(data, Table):
        if data_root is not None:
            return Table(data.frame, Path(data_root).resolve(), data.source)
        return data
    foreign = foreign_frame(data)
    if foreign is not None:
        data = foreign
    if isinstance(data, pd.DataFrame):
        check_unique_columns(list(data.columns), "<DataFrame>")
        # The DataFrame's own index is kept, so predictions align with the rows they came from.
        root = Path(data_root) if data_root is not None else Path.cwd()
        return Table(media_cells(data), root.resolve(), "<DataFrame>")
    if not isinstance(data, (str, Path)):
        raise DataError(
            f"cannot read a {type(data).__name__} as a table",
            hint="Pass a pandas or Polars DataFrame, a Hugging Face Dataset, or the path of a .csv, .parquet or "
            ".jsonl file (or a folder or glob of .parquet files).",
        )
    files = parquet_files(data)
    if files is not None:
        return _read_parquet_files(files, str(data), data_root)
    path = Path(data)
    kind = table_kind(path)
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="," if kind == "csv" else "\t", encoding="utf-8")
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, encoding="utf-8")
        else:
            frame = pd.read_json(path, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise utf8_error(path, e) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"table {path} is empty: it has no header and no rows") from None
    except Exception as e:
        # A parser fed a malformed file raises more than its documented errors (ParserError, ValueError, OSError;
        # also TypeError, IndexError, RecursionError, ...): each is this file's fault, so each is a DataError.
        raise DataError(f"cannot parse {path} as {kind}: {short(str(e)) or type(e).__name__}") from None
    if kind == "parquet":
        check_arrow_columns(frame, path)
    if kind in ("jsonl", "json"):
        check_record_columns(frame, path, kind)
    if kind in ("csv", "tsv"):
        # pandas renames a repeated header silently (a, a.1): read the header as written to find repeats.
        check_unique_columns(csv_header_names(path, kind), str(path))
    check_unique_columns(list(frame.columns), str(path))
    root = Path(data_root) if data_root is not None else path.parent
    return Table(media_cells(frame.reset_index(drop=True)), root.resolve(), str(path))


def parquet_files(data: "str | Path") -> list[Path] | None:
    """The Parquet files that a folder or a glob pattern (``data/*.parquet``, ``data/**/*.parquet``) names, in name
    order; None when ``data`` is one file's path (or names nothing a folder or pattern could). A folder or pattern
    with no Parquet file is a :class:`DataError`."""
    text = str(data)
    path = Path(text)
    try:
        if path.is_file():  # a file named with brackets or wildcards ("runs/[a]/table.csv") is that file
            return None
        pattern = any(c in text for c in "*?[")
        folder = not pattern and path.is_dir()
    except (OSError, ValueError):
        return None
    if not pattern and not folder:
        return None
    if folder:
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".parquet", ".pq") and p.is_file())
    else:
        anchor = Path(path.anchor) if path.is_absolute() else Path(".")
        relative = str(path.relative_to(anchor)) if path.is_absolute() else text
        found = sorted(p for p in anchor.glob(relative) if p.is_file())
        found = [p for p in found if p.suffix.lower() in (".parquet", ".pq")]
    if not found:
        raise DataError(
            f"no Parquet files in {text}",
            hint="A folder or glob pattern is read as Parquet files (*.parquet, *.pq); pass a file path otherwise.",
        )
    return found


def _read_parquet_files(files: list[Path], source: str, data_root: "str | Path | None") -> Table:
    """Parquet files read one after another into one table (the same columns in each, checked)."""
    frames: list[pd.DataFrame] = []
    for f in files:
        part = read_table(f, data_root).frame
        if frames and list(part.columns) != list(frames[0].columns):
            raise DataError(
                f"{f} has other columns than {files[0]}: {', '.join(map(str, part.columns))} instead of "
                f"{', '.join(map(str, frames[0].columns))}",
                hint="Every file of a Parquet folder or pattern must hold the same columns.",
            )
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    root = Path(data_root) if data_root is not None else folder_of(source, files)
    return Table(frame, root.resolve(), source)


def folder_of(source: str, files: list[Path]) -> Path:
    """The folder a Parquet folder's or pattern's relative paths resolve against: the folder itself, or the
    pattern's folder part before its first wildcard."""
    path = Path(source)
    if path.is_dir():
        return path
    parts = []
    for part in path.parts:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def table_kind(path: Path) -> str:
    """The format of the table file ``path`` (csv, tsv, parquet, jsonl, json), from its suffix; a
    :class:`DataError` when there is no such file or the suffix is not a table format."""
    try:
        found = path.is_file()
    except (OSError, ValueError) as e:  # a name the file system refuses (a component over 255 bytes, a NUL byte)
        raise DataError(f"cannot open table {short(str(path))}: {e}") from None
    if not found:
        raise DataError(f"table file not found: {path}", hint="Pass the path of a .csv, .parquet or .jsonl file.")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"cannot read {path}: unknown table format '{path.suffix}'",
            hint=f"Use one of: {', '.join(sorted(SUFFIXES))}.",
        )
    return kind


def check_record_columns(frame: pd.DataFrame, path: Path, kind: str) -> None:
    """Refuse a JSON/JSONL table whose records are not objects with named columns."""
    if not all(isinstance(c, str) for c in frame.columns):
        raise DataError(
            f"cannot read {path} as {kind}: its records are not JSON objects (a value such as "
            f"{short(repr(frame.iloc[0, 0]) if frame.size else '[]', 60)} where a record with named columns was "
            "expected)",
            hint='Write one object per row, e.g. {"image": "a.png", "label": "cat"}.',
        )


def csv_header_names(path: Path, kind: str) -> list[str]:
    """The header of a CSV/TSV file as written (pandas renames a repeated name ``a.1`` when it reads the table);
    empty when the header cannot be read on its own (the table's own read reports that)."""
    try:
        header = pd.read_csv(
            path,
            sep="," if kind == "csv" else "\t",
            encoding="utf-8",
            header=None,
            nrows=1,
            dtype=str,
            keep_default_na=False,
        )
        return [str(v) for v in header.iloc[0].tolist()] if len(header) else []
    except Exception:  # the table itself parsed; a header this reader cannot re-read is left to the frame
        return []


def utf8_error(path: Path, e: UnicodeDecodeError) -> DataError:
    """The error for a table that is not UTF-8, naming the first bad byte's offset and line; the file is scanned
    in blocks (the parser's own offsets are relative to the chunk it was decoding)."""
    found = first_bad_utf8(path)
    if found is None:
        start, byte, line = e.start, e.object[e.start], e.object[: e.start].count(b"\n") + 1
    else:
        start, byte, line = found
    return DataError(
        f"cannot read {path}: it is not UTF-8 text (byte 0x{byte:02x} at offset {start}, line {line})",
        [RowIssue(max(line - 2, 0), "<file>", "invalid UTF-8 byte")],
        hint="Re-save the table as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`).",
    )


def first_bad_utf8(path: Path, block: int = 1 << 20) -> tuple[int, int, int] | None:
    """(offset, byte, line) of the first byte of ``path`` that is not valid UTF-8, or None; reads one block at a
    time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(block)
            final = not chunk
            pending = decoder.getstate()[0]  # bytes of an unfinished character carried from the last block
            try:
                decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                data = pending + chunk
                at = offset - len(pending) + e.start
                return at, data[e.start], lines + data[: e.start].count(b"\n") + 1
            if final:
                return None
            offset += len(chunk)
            lines += chunk.count(b"\n")
