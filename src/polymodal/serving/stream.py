"""``POST /predict/stream``: a chunked NDJSON request body in, an NDJSON response streamed out.

Each line of the body is one row, a JSON object as in ``/predict`` (files base64-encoded); each line of the response
answers the line with the same number, in order: ``{"row", "prediction", "probabilities"}`` or, for a bad line,
``{"row", "column", "problem"}``; the stream goes on. Lines are taken as they arrive: whatever complete lines a
body chunk holds (at most ``max_rows``) are validated, decoded in the worker pool and queued to the micro-batcher
together, and their answers are sent before the next chunk is read, so memory is bounded by one group of lines and
a client that stops reading stops the server from reading more (back-pressure).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..data.dataset import Prepared
from ..pipeline import NONFINITE_OUTPUT, nonfinite_rows
from ..schema import Schema
from .payload import RequestError, _b64, load_json
from .schemas import FILE_KINDS, ServeConfig

if TYPE_CHECKING:
    from .batcher import MicroBatcher
    from .pool import WorkPool


class TimedOut(RequestError):
    """The request (decoding and model) took longer than ``request_timeout_s``: 504."""

    def __init__(self, seconds: float):
        super().__init__(
            504,
            f"the request took longer than {seconds:g} s (--request-timeout); retry later or send smaller requests",
        )
        self.headers = {"Retry-After": "5"}


class NDJSONStream(Response):
    """A streamed NDJSON response that does not listen for the client's disconnect while it streams: Starlette's
    StreamingResponse does, and its listener would consume the request body chunks this response is reading."""

    media_type = "application/x-ndjson"

    def __init__(self, lines: AsyncIterator[bytes]):
        super().__init__(None, 200, media_type=self.media_type)
        self.lines = lines

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        try:
            async for chunk in self.lines:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except OSError:  # the client went away: nothing left to answer
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _error(n: int, column: str | None, problem: str) -> dict[str, Any]:
    return {"row": n, "column": column, "problem": problem}


class StreamPredictor:
    """Answers the lines of one streamed request body, group by group."""

    def __init__(
        self,
        row: type[BaseModel],
        schema: Schema,
        pool: WorkPool,
        batcher: MicroBatcher[Prepared, np.ndarray],
        cfg: ServeConfig,
        decode: Callable[[dict[str, Any]], Prepared],
        answers: Callable[[np.ndarray], list[dict[str, Any]]],
    ):
        self.row, self.schema, self.pool, self.batcher, self.cfg = row, schema, pool, batcher, cfg
        self.decode, self.answers = decode, answers
        self.files = [c for c in schema.input_columns() if schema.kinds()[c] in FILE_KINDS]
        self.columns = list(schema.input_columns())

    async def answer(self, request: Request) -> AsyncIterator[bytes]:
        buffer, number, skipping = b"", 0, False
        try:
            async for chunk in request.stream():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if skipping and lines:  # the rest of an over-long line, up to its newline, was answered already
                    lines, skipping = lines[1:], False
                if len(buffer) > self.cfg.max_body_bytes:  # one line larger than a whole /predict body
                    if not skipping:
                        lines.append(b"\x00too-long")
                    buffer, skipping = b"", True
                group = []
                for line in lines:
                    if line.strip():
                        group.append((number, line))
                    number += 1
                for start in range(0, len(group), self.cfg.max_rows):
                    yield await self._group(group[start : start + self.cfg.max_rows])
        except ClientDisconnect:
            return
        if buffer.strip() and not skipping:
            yield await self._group([(number, buffer)])

    async def _group(self, group: list[tuple[int, bytes]]) -> bytes:
        answers: dict[int, dict[str, Any]] = {}
        rows: dict[int, dict[str, Any]] = {}
        for n, line in group:
            parsed = self._parse(n, line)
            if "problem" in parsed:
                answers[n] = parsed
            else:
                rows[n] = parsed
        if rows:
            try:
                async with asyncio.timeout(self.cfg.request_timeout_s):
                    decoded = await self.pool.run(self._decode_all, rows)
                    ready = {n: p for n, p in decoded.items() if isinstance(p, Prepared)}
                    answers.update({n: p for n, p in decoded.items() if not isinstance(p, Prepared)})
                    outputs = await asyncio.gather(*(self.batcher.submit(p, prepared=True) for p in ready.values()))
            except TimeoutError:
                problem = f"not answered within {self.cfg.request_timeout_s:g} s (--request-timeout)"
                answers.update({n: _error(n, None, problem) for n in rows if n not in answers})
            except RequestError as e:  # the pool is full: the group is answered, the stream goes on
                answers.update({n: _error(n, None, e.message) for n in rows if n not in answers})
            else:
                for n, out in zip(ready, outputs):
                    if len(nonfinite_rows(out)):
                        answers[n] = _error(n, None, NONFINITE_OUTPUT)
                    else:
                        answers[n] = {"row": n, **self.answers(out)[0]}
        return b"".join(json.dumps(answers[n], ensure_ascii=False).encode() + b"\n" for n, _ in group)

    def _parse(self, n: int, line: bytes) -> dict[str, Any]:
        if line == b"\x00too-long" or len(line) > self.cfg.max_body_bytes:
            return _error(n, None, f"the line is longer than {self.cfg.max_body_bytes:,} bytes (--max-body-mb)")
        try:
            doc = load_json(line)
        except RequestError as e:
            return _error(n, None, e.message)
        if not isinstance(doc, dict):
            return _error(n, None, f"the line is a JSON {type(doc).__name__}, not an object of column: value")
        try:
            row = self.row.model_validate(doc).model_dump(by_alias=True)
        except ValidationError as e:
            first = e.errors()[0]
            column = str(first["loc"][0]) if first["loc"] else None
            return _error(n, column, first["msg"])
        except (ValueError, RecursionError) as e:
            return _error(n, None, f"a value cannot be read ({type(e).__name__})")
        issues: list[str] = []
        for col in self.files:
            if row[col] is not None:
                row[col] = _b64(row[col], n, col, issues)
                if issues:
                    return _error(n, col, issues[0])
        return row

    def _decode_all(self, rows: dict[int, dict[str, Any]]) -> dict[int, Prepared | dict[str, Any]]:
        out: dict[int, Prepared | dict[str, Any]] = {}
        for n, row in rows.items():
            try:
                out[n] = self.decode(row)
            except RequestError as e:
                detail = e.issues[0] if e.issues else e.message
                column = next((c for c in self.columns if f"'{c}'" in detail or f" {c}:" in detail), None)
                out[n] = _error(n, column, detail)
        return out
