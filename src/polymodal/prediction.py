"""Predict a table of any size into a file: chunk by chunk, written as it goes, renamed into place at the end.

:func:`prediction_frames` turns each chunk of :meth:`FittedPipeline.chunks` into the rows of the output table
(``row`` index, ``prediction``, optional probability or log-probability columns); :class:`PredictionWriter` appends
them to a temp file next to the target in its format (CSV, Parquet or JSONL, from the suffix) and renames it over
the target only when every chunk is written, so that a failed or killed run leaves no partial file under the final
name. ``polymodal predict`` and :meth:`polymodal.api.Predictor.predict_to` use both.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pandas as pd

from .errors import ConfigError, PolymodalError
from .io import atomic_file
from .pipeline import Data, FittedPipeline
from .tasks.classification import ClassificationTask
from .tasks.multilabel import MultilabelTask

#: Output formats by file suffix (anything else is CSV).
OUTPUT_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def output_format(path: str | Path | None) -> str:
    """The format a prediction file is written in: parquet or jsonl by its suffix, else csv (also stdout)."""
    return "csv" if path is None else OUTPUT_FORMATS.get(Path(path).suffix.lower(), "csv")


@dataclass
class PredictionSummary:
    """What :func:`predict_to` wrote: the file (None for stdout), its format and the number of predicted rows."""

    path: Path | None
    format: str
    rows: int


def prediction_frames(
    pipeline: FittedPipeline,
    data: Data,
    *,
    proba: bool = False,
    scores: bool = False,
    on_error: str | None = None,
    data_root: str | Path | None = None,
    chunk_rows: int | None = None,
) -> Iterator[pd.DataFrame]:
    """The output table of ``data``, one DataFrame per chunk (index ``row``: the input's row number or index).

    Columns: ``prediction`` (a multi-label model's tags joined by its ``tag_separator``; a multi-task model has one
    column per target, named like it), then with ``proba`` one ``proba_<class>`` column per class (per tag;
    ``proba_<target>_<class>`` per classification target of a multi-task model), with ``scores`` (generation)
    ``log_prob``; a reconstruction model has ``anomaly_score`` and one ``anomaly_<modality>`` column per scored
    modality instead of ``prediction``. One pass over the data: a predicted class comes from the same outputs as its
    probabilities.
    """
    task = pipeline.task
    generation = scores or pipeline.problem_type == "generation"
    if generation and proba:
        raise PolymodalError("--proba is for classification; a generation model has --scores")
    if scores and pipeline.problem_type != "generation":
        raise ConfigError("return_scores is for generation models; use predict_proba for class probabilities")
    if proba and pipeline.problem_type != "regression":
        pipeline.check_proba()
    for decoded, outputs in pipeline.chunks(data, on_error=on_error, data_root=data_root, chunk_rows=chunk_rows):
        result: pd.DataFrame
        if generation:
            pred = pipeline.predictions(decoded, outputs, return_scores=scores)
            # a DataFrame (text, log_prob) exactly when scores are asked for
            result = (
                pred.rename(columns={pipeline.label: "prediction"})
                if isinstance(pred, pd.DataFrame)
                else pred.to_frame("prediction")
            )
        elif pipeline.problem_type == "multilabel":
            # the tags are decided from the probabilities; written joined (see task.join)
            ml = cast(MultilabelTask, task)
            probs = cast(pd.DataFrame, pipeline.probabilities(decoded, outputs))
            tags = pd.Series(ml.tags_from_proba(probs.to_numpy()), index=probs.index).map(ml.join)
            result = tags.to_frame("prediction")
            if proba:
                result = result.join(probs.add_prefix("proba_"))
        elif pipeline.problem_type == "reconstruction":  # anomaly_score, anomaly_<modality>
            result = cast(pd.DataFrame, pipeline.predictions(decoded, outputs))
        elif pipeline.problem_type == "multitask":
            result = cast(pd.DataFrame, pipeline.predictions(decoded, outputs))
            if proba:
                for name, probs in cast(dict, pipeline.probabilities(decoded, outputs)).items():
                    result = result.join(probs.add_prefix(f"proba_{name}_"))
        elif proba and pipeline.problem_type != "regression":
            probs = cast(pd.DataFrame, pipeline.probabilities(decoded, outputs))
            # the task's own decision: a tuned threshold (task.threshold) may pick a class that is not the most
            # probable
            clf = cast(ClassificationTask, task)
            decided = np.asarray(clf.classes, dtype=object)[clf.predict_index(probs.to_numpy())]
            result = pd.Series(decided, index=probs.index).to_frame("prediction").join(probs.add_prefix("proba_"))
        else:
            result = cast(pd.Series, pipeline.predictions(decoded, outputs)).to_frame("prediction")
        result.index.name = "row"
        yield result


class PredictionWriter:
    """Appends chunks of an output table to ``path`` (None: CSV on stdout) in ``fmt`` (csv, parquet, jsonl).

    Use it as a context manager: the chunks go to a temp file in the target's folder, renamed over ``path`` when the
    block ends without an error and deleted when it raises (a stop signal included). Parquet chunks are written as
    row groups of one schema, the first chunk's (later ones are cast to it).
    """

    def __init__(self, path: str | Path | None, fmt: str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.format = fmt or output_format(path)
        if self.format not in ("csv", "parquet", "jsonl"):
            raise ConfigError(f"unknown output format {self.format!r}; use csv, parquet or jsonl")
        if self.path is None and self.format != "csv":
            raise ConfigError("only CSV can be written to stdout; pass --out FILE.parquet / FILE.jsonl")
        self.rows = 0
        self._file: IO[Any] | None = None
        self._parquet: Any = None
        self._schema: Any = None
        self._empty: pd.DataFrame | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> PredictionWriter:
        if self.path is None:
            self._file = sys.stdout
        elif self.format == "parquet":
            self._file = self._stack.enter_context(atomic_file(self.path, "wb"))
        else:
            self._file = self._stack.enter_context(atomic_file(self.path, "w", newline="", encoding="utf-8"))
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows of ``frame`` (an output table chunk with its ``row`` index)."""
        if len(frame) == 0 and (self.rows or self._empty is not None):
            return
        if len(frame) == 0:  # kept for the header (or schema) of a table with no predicted row
            self._empty = frame
            return
        self._write(frame)
        self.rows += len(frame)

    def _write(self, frame: pd.DataFrame) -> None:
        assert self._file is not None, "write inside the with block"
        first = self.rows == 0
        if self.format == "csv":
            frame.to_csv(self._file, header=first)
        elif self.format == "jsonl":
            text = frame.reset_index().to_json(orient="records", lines=True, force_ascii=False)
            self._file.write(text if text.endswith("\n") or not text else text + "\n")
        else:
            import pyarrow as pa  # type: ignore[import-untyped]
            import pyarrow.parquet as pq  # type: ignore[import-untyped]

            table = pa.Table.from_pandas(frame.reset_index(), schema=self._schema, preserve_index=False)
            if self._parquet is None:
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self._file, self._schema)
            self._parquet.write_table(table)

    def __exit__(self, *exc: Any) -> bool | None:
        if exc[0] is None:
            if self.rows == 0:
                self._write(self._empty if self._empty is not None else pd.DataFrame(index=pd.Index([], name="row")))
            if self._parquet is not None:
                self._parquet.close()
            if self.path is None:
                cast(IO[str], self._file).flush()
        elif self._parquet is not None:
            with contextlib.suppress(Exception):
                self._parquet.close()
        return self._stack.__exit__(*exc)


def predict_to(
    pipeline: FittedPipeline,
    data: Data,
    out: str | Path | None,
    *,
    proba: bool = False,
    scores: bool = False,
    on_error: str | None = None,
    data_root: str | Path | None = None,
    chunk_rows: int | None = None,
    fmt: str | None = None,
) -> PredictionSummary:
    """Predict ``data`` chunk by chunk into ``out`` (CSV, Parquet or JSONL by its suffix unless ``fmt``; None:
    CSV on stdout), in memory bounded by one chunk; ``out`` appears complete or not at all."""
    writer = PredictionWriter(out, fmt)
    frames = prediction_frames(
        pipeline, data, proba=proba, scores=scores, on_error=on_error, data_root=data_root, chunk_rows=chunk_rows
    )
    with writer:
        for frame in frames:
            writer.write(frame)
    return PredictionSummary(writer.path, writer.format, writer.rows)
