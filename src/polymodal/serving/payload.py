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
from ..data.loaders import InMemoryFile
from ..data.processors import LoadContext, Processor
from ..errors import LoadError, PolymodalError, RowIssue
from ..schema import Schema
from .schemas import FILE_KINDS


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


def parse_json_rows(body: bytes, row: type[BaseModel], schema: Schema, max_rows: int) -> list[dict[str, Any]]:
    """``{"rows": [{column: value, ...}, ...]}`` → rows with files as :class:`InMemoryFile`."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None
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
    issues += [f"field '{c}': only image and audio columns take a file part" for c in files if c not in file_cols]
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
            items[m].append(item)
    if issues:
        raise RequestError(422, "some values could not be decoded", [str(i) for i in issues])
    return Prepared(items, np.arange(len(rows)))
