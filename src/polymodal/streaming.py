"""Streaming prediction: JSON rows in (one object per line), one JSON result per row out, in order, as rows arrive.

``polymodal predict RUN - --stream`` reads stdin through :func:`predict_lines`. Memory is bounded by the batch: a
reader thread fills a queue of at most ``4 * max_batch`` lines, each batch takes what has arrived (at most
``max_batch`` lines, waiting at most ``max_wait_s`` for more after the first), is decoded and predicted, and its
results are written before the next batch is read. A bad line (not JSON, not an object, a missing column, a cell
that cannot be decoded, a non-finite output) is answered by an error object ``{"row", "column", "problem"}`` in its
place; the stream goes on.
"""

from __future__ import annotations

import json
import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import DataError, PolymodalError

if TYPE_CHECKING:
    from .pipeline import FittedPipeline

_END = object()


@dataclass
class RowError:
    """Why one line of the stream got no prediction. ``row`` is its 0-based line number, ``column`` the cell's
    column (None when the problem is the line itself)."""

    row: int
    column: str | None
    problem: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "problem": self.problem}


def batches(lines: Iterable[str], max_batch: int, max_wait_s: float) -> Iterator[list[tuple[int, str]]]:
    """``(line number, line)`` groups of what has arrived: the first line is waited for, then up to ``max_batch``
    lines already read (or arriving within ``max_wait_s``). Blank lines are skipped but keep their number."""
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, 4 * max_batch))

    def read() -> None:
        try:
            for line in lines:
                q.put(line)
        except BaseException as e:  # the reader's error is raised in the consumer
            q.put(e)
        q.put(_END)

    threading.Thread(target=read, name="polymodal-stream-reader", daemon=True).start()
    number, done = 0, False
    while not done:
        group: list[tuple[int, str]] = []
        item = q.get()
        while True:
            if item is _END:
                done = True
                break
            if isinstance(item, BaseException):
                raise item
            if item.strip():
                group.append((number, item))
            number += 1
            if len(group) >= max_batch:
                break
            try:
                item = q.get(timeout=max_wait_s) if group else q.get()
            except queue.Empty:
                break
        if group:
            yield group


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RowPredictor:
    """Predicts one batch of parsed lines with a fitted pipeline, answering every line."""

    def __init__(self, pipeline: FittedPipeline, proba: bool = False, data_root: str | Path | None = None):
        self.pipeline, self.data_root = pipeline, data_root
        self.columns = list(pipeline.schema.input_columns())
        if proba:
            pipeline.check_proba()
        self.proba = proba

    def __call__(self, group: list[tuple[int, str]]) -> list[dict[str, Any]]:
        answers: dict[int, dict[str, Any]] = {}
        rows: dict[int, dict[str, Any]] = {}
        for n, line in group:
            parsed = self._parse(n, line)
            if isinstance(parsed, RowError):
                answers[n] = parsed.to_dict()
            else:
                rows[n] = parsed
        if rows:
            answers.update(self._predict(rows))
        return [answers[n] for n, _ in group]

    def _parse(self, n: int, line: str) -> dict[str, Any] | RowError:
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as e:
            return RowError(n, None, f"the line is not valid JSON ({e})")
        if not isinstance(row, dict):
            return RowError(n, None, f"the line is a JSON {type(row).__name__}, not an object of column: value")
        missing = [c for c in self.columns if c not in row]
        if missing:
            return RowError(n, missing[0], f"the row lacks column(s) {', '.join(repr(c) for c in missing)}")
        bad = [c for c in self.columns if isinstance(row[c], (dict, list)) and not self._series(c)]
        if bad:
            return RowError(n, bad[0], "a cell holds a JSON object or array; expected a plain value")
        return {c: row[c] for c in self.columns}

    def _series(self, column: str) -> bool:
        return self.pipeline.schema.kinds()[column].value == "timeseries"

    def _predict(self, rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        answers: dict[int, dict[str, Any]] = {}
        pending = dict(rows)
        while pending:
            frame = pd.DataFrame.from_records(list(pending.values()), index=list(pending), columns=self.columns)
            try:
                decoded = self.pipeline.prepare(frame, on_error="fail", data_root=self.data_root)
            except DataError as e:
                named = [i for i in e.issues if i.row in pending]
                if not named:  # a problem of the whole batch: each row on its own says whose it is
                    return answers | self._one_by_one(pending)
                for issue in named:
                    n = cast_int(issue.row)
                    if n in pending:
                        del pending[n]
                        answers[n] = RowError(n, issue.column, issue.problem).to_dict()
                continue
            except PolymodalError as e:
                if len(pending) == 1:
                    n = next(iter(pending))
                    return answers | {n: RowError(n, None, str(e).splitlines()[0]).to_dict()}
                return answers | self._one_by_one(pending)
            outputs = self.pipeline.outputs(decoded)
            kept, outputs = self.pipeline.finite_outputs(decoded, outputs, on_error="skip")
            for n in set(pending) - {cast_int(i) for i in kept.index}:
                answers[n] = RowError(n, None, "the model's output is NaN or inf: no prediction").to_dict()
            answers.update(self._answers(kept, outputs))
            break
        return answers

    def _one_by_one(self, rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        for n, row in rows.items():
            out |= self._predict({n: row})
        return out

    def _answers(self, decoded: Any, outputs: Any) -> dict[int, dict[str, Any]]:
        preds = self.pipeline.predictions(decoded, outputs)
        probs = self.pipeline.probabilities(decoded, outputs) if self.proba else None
        out: dict[int, dict[str, Any]] = {}
        for pos, label in enumerate(decoded.index):
            n = cast_int(label)
            if isinstance(preds, pd.DataFrame):
                value: Any = {str(c): _plain(preds.iloc[pos][c]) for c in preds.columns}
            else:
                value = _plain(preds.iloc[pos])
                if isinstance(value, (list, tuple)):
                    value = [_plain(v) for v in value]
            answer: dict[str, Any] = {"row": n, "prediction": value}
            if probs is not None:
                answer["probabilities"] = (
                    {t: {str(c): _plain(p.iloc[pos][c]) for c in p.columns} for t, p in probs.items()}
                    if isinstance(probs, dict)
                    else {str(c): _plain(probs.iloc[pos][c]) for c in probs.columns}
                )
            out[n] = answer
        return out


def cast_int(label: Any) -> int:
    return int(label)


def predict_lines(
    pipeline: FittedPipeline,
    lines: Iterable[str],
    write: Callable[[str], object],
    flush: Callable[[], None],
    *,
    proba: bool = False,
    data_root: str | Path | None = None,
    max_batch: int = 64,
    max_wait_s: float = 0.05,
) -> int:
    """Predict every JSON line of ``lines``, writing one JSON line per input line (blank lines excepted) through
    ``write`` and calling ``flush`` after each batch. Returns the number of lines answered."""
    predictor = RowPredictor(pipeline, proba=proba, data_root=data_root)
    answered = 0
    for group in batches(lines, max_batch, max_wait_s):
        for answer in predictor(group):
            write(json.dumps(answer, ensure_ascii=False, default=_plain) + "\n")
        flush()
        answered += len(group)
    return answered
