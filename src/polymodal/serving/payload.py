"""Request bodies → decoded rows, with the loaders' own limits; files are decoded from memory, never from a path.

Every problem becomes a :class:`RequestError` carrying the HTTP status and a message naming the row and field.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from ..config import LimitsConfig
from ..data.dataset import Prepared
from ..data.loaders import InMemoryFile, audio_header, audio_info, image_size
from ..data.processors import LoadContext, Processor
from ..data.video import video_info
from ..errors import LoadError, PolymodalError, RowIssue
from ..schema import ColumnKind, Schema
from .schemas import FILE_KINDS, ServeConfig


class RequestError(PolymodalError):
    """A bad request: ``status`` is the HTTP status (4xx) to answer with."""

    def __init__(self, status: int, message: str, issues: list[str] | None = None):
        super().__init__(message)
        self.status, self.message, self.issues = status, message, list(issues or [])


def _where(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p not in ("body",)]
    if len(parts) >= 2 and parts[0] == "rows" and isinstance(parts[1], int):
        rest = ".".join(str(p) for p in parts[2:])
        return f"row {parts[1]}" + (f", field '{rest}'" if rest else "")
    return "field '" + ".".join(map(str, parts)) + "'" if parts else "body"


def validation_issues(e: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    return [f"{_where(prefix + tuple(err['loc']))}: {err['msg']}" for err in e.errors()]


def load_json(body: bytes) -> Any:
    """The parsed body; 400 for anything the parser refuses, including what it refuses through its own limits."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None
    except ValueError as e:  # Python's int-string limit (sys.get_int_max_str_digits): a number of 4,300+ digits
        raise RequestError(400, f"the body holds a number too long to read: {e}") from None
    except RecursionError:  # the C parser guards its recursion; nothing in a row needs more than two levels
        raise RequestError(400, "the JSON body is nested too deeply (a row is an object of plain values)") from None


def parse_json_rows(body: bytes, row: type[BaseModel], schema: Schema, max_rows: int) -> list[dict[str, Any]]:
    """``{"rows": [{column: value, ...}, ...]}`` → rows with files as :class:`InMemoryFile`."""
    doc = load_json(body)
    if not isinstance(doc, dict) or set(doc) != {"rows"} or not isinstance(doc["rows"], list):
        raise RequestError(
            422,
            'the body must be a JSON object {"rows": [{column: value, ...}, ...]}',
            [f"expected columns: {', '.join(schema.input_columns())}"],
        )
    rows = doc["rows"]
    if not rows:
        raise RequestError(422, "'rows' is empty: send at least one row")
    if len(rows) > max_rows:
        raise RequestError(413, f"{len(rows)} rows in one request; at most {max_rows} (--max-rows)")
    out, issues = [], []
    for i, r in enumerate(rows):
        try:
            out.append(row.model_validate(r).model_dump(by_alias=True))
        except ValidationError as e:
            issues += validation_issues(e, ("rows", i))
        except (ValueError, RecursionError) as e:  # a value the validator cannot even read (a huge integer)
            issues.append(f"row {i}: a value cannot be read ({type(e).__name__})")
    if issues:
        raise RequestError(422, "the request does not match the model's input columns", issues)
    for i, r in enumerate(out):
        for col in _file_columns(schema):
            if r[col] is not None:
                r[col] = _b64(r[col], i, col, issues)
    if issues:
        raise RequestError(422, "some files could not be read", issues)
    return out


def _file_columns(schema: Schema) -> list[str]:
    kinds = schema.kinds()
    return [c for c in schema.input_columns() if kinds[c] in FILE_KINDS]


def _b64(value: str, i: int, col: str, issues: list[str]) -> InMemoryFile | None:
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        issues.append(f"row {i}, field '{col}': not valid base64 (send the file's bytes base64-encoded, not a path)")
        return None
    if not data:
        issues.append(f"row {i}, field '{col}': the file is empty")
        return None
    return InMemoryFile(data, col)


def parse_form_row(
    fields: dict[str, Any], files: dict[str, bytes], row: type[BaseModel], schema: Schema
) -> list[dict[str, Any]]:
    """One multipart row: file parts for image/audio columns, form fields for the others (absent = null)."""
    file_cols = set(_file_columns(schema))
    issues = [
        f"field '{c}': a file column needs a file part, not a text field (paths are not read)"
        for c in fields
        if c in file_cols
    ]
    issues += [
        f"field '{c}': only image, audio and video columns take a file part" for c in files if c not in file_cols
    ]
    unknown = [c for c in [*fields, *files] if c not in schema.input_columns()]
    issues += [f"field '{c}': not an input column of this model" for c in unknown]
    if issues:
        raise RequestError(
            422,
            "the form does not match the model's input columns",
            issues + [f"expected columns: {', '.join(schema.input_columns())}"],
        )
    values = {
        c: (fields.get(c) if fields.get(c) not in ("",) else None) for c in schema.input_columns() if c not in file_cols
    }
    try:
        r = row(**values, **{c: None for c in file_cols}).model_dump(by_alias=True)
    except ValidationError as e:
        raise RequestError(
            422, "the form does not match the model's input columns", validation_issues(e, ("rows", 0))
        ) from None
    for c in file_cols:
        data = files.get(c)
        r[c] = InMemoryFile(data, c) if data else None
    return [r]


class TooLarge(RequestError):
    """Over one of the server's per-request work limits (413)."""

    def __init__(self, message: str, issues: list[str]):
        super().__init__(413, message, issues)


def check_work(rows: list[dict[str, Any]], schema: Schema, limits: LimitsConfig, cfg: ServeConfig) -> None:
    """Refuse a request whose files are over the server's limits, from their headers only (nothing decoded):
    pixels per image, seconds per audio file, and the estimated decoded size of all its files together.
    Unreadable headers are left to :func:`decode_rows`, which reports them (422)."""
    kinds = schema.kinds()
    issues, total = [], 0
    for i, r in enumerate(rows):
        for col in _file_columns(schema):
            f = r[col]
            if not isinstance(f, InMemoryFile):
                continue
            try:
                if kinds[col] is ColumnKind.IMAGE:
                    w, h, _ = image_size(f, limits)
                    total += w * h * 4
                    if w * h > cfg.max_image_pixels:
                        issues.append(
                            f"row {i}, column '{col}': image is {w}x{h} = {w * h:,} pixels, over the server's limit "
                            f"of {cfg.max_image_pixels:,} per image (max_image_pixels)"
                        )
                elif kinds[col] is ColumnKind.VIDEO:
                    head = video_info(f, limits)
                    total += head.width * head.height * 4  # frames are decoded one at a time, kept small
                    if head.width * head.height > cfg.max_image_pixels:
                        issues.append(
                            f"row {i}, column '{col}': video frames are {head.width}x{head.height} = "
                            f"{head.width * head.height:,} pixels, over the server's limit of "
                            f"{cfg.max_image_pixels:,} per image (max_image_pixels)"
                        )
                    if head.seconds > cfg.max_video_seconds:
                        issues.append(
                            f"row {i}, column '{col}': video is {head.seconds:.1f} s long, over the server's limit "
                            f"of {cfg.max_video_seconds:g} s per file (max_video_seconds)"
                        )
                else:
                    sr, seconds = audio_info(f, limits)
                    total += int(seconds * sr) * 4 * max(1, audio_header(f)[2])
                    if seconds > cfg.max_audio_seconds:
                        issues.append(
                            f"row {i}, column '{col}': audio is {seconds:.1f} s long, over the server's limit of "
                            f"{cfg.max_audio_seconds:g} s per file (max_audio_seconds)"
                        )
            except Exception:  # an unreadable header: decode_rows reports it with the loader's message
                continue
    if issues:
        raise TooLarge("the request is over the server's limits on work per request", issues)
    if total > cfg.max_decoded_bytes:
        raise TooLarge(
            f"the request's files would take about {total:,} bytes decoded, over the server's limit of "
            f"{cfg.max_decoded_bytes:,} per request (max_decoded_bytes): send fewer or smaller files per request",
            [],
        )


def decode_rows(rows: list[dict[str, Any]], processors: dict[str, Processor], limits: LimitsConfig) -> Prepared:
    """Decode one request's rows with the processors' own ``cell``/``is_absent``/``load`` under the loaders' limits,
    exactly as :func:`~polymodal.data.dataset.prepare` decodes a table's cells, but inline: prepare's thread pool and
    DataFrame cost ~3 ms per call, more than the model's share of a request, and the server already decodes many
    requests at once in its worker threads. No data root: no path is ever opened."""
    ctx = LoadContext(None, limits)  # type: ignore[arg-type]
    items: dict[str, list[Any]] = {m: [] for m in processors}
    issues: list[RowIssue] = []
    for i, r in enumerate(rows):
        for m, p in processors.items():
            value = p.cell(r)
            item = None
            if not p.is_absent(value):
                try:
                    item = p.load(value, ctx)
                except LoadError as e:
                    issues.append(RowIssue(i, p.columns[0] if len(p.columns) == 1 else m, str(e)))
                except Exception as e:  # a decoder failing on a client's file is the client's 422
                    msg = f"cannot be decoded ({type(e).__name__}: {str(e)[:200]})"
                    issues.append(RowIssue(i, p.columns[0] if len(p.columns) == 1 else m, msg))
            items[m].append(item)
    if issues:
        raise RequestError(422, "some values could not be decoded", [str(i) for i in issues])
    return Prepared(items, np.arange(len(rows)))
