"""Retrieval over a fitted two-tower pipeline: the paired training table, ``embed`` and ``search``.

A retrieval table's rows are pairs (row i's query columns describe row i's target columns). :func:`pair_table`
keeps the query and target columns and adds each row's position as the label (:data:`PAIR_COLUMN`), so the
fitting steps and ``evaluate`` run as for any task. :func:`embed` runs one side's columns through the network
(the other side's columns, absent from such a table, are given as empty cells: their tower's output is dropped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .config import PolymodalConfig
from .data.readers import Table, read_table
from .errors import ConfigError, SchemaError
from .io import atomic_file
from .pipeline import Data, FittedPipeline, join_outputs
from .search import ApproximateIndex, Hits, search
from .tasks.retrieval import PAIR_COLUMN, SIDES, RetrievalTask

#: the sub-folder of a run directory that holds the target collection's approximate index
INDEX_DIR = "search_index"


def side_columns(config: PolymodalConfig, side: str) -> list[str]:
    if side not in SIDES:
        raise ConfigError(f"side must be 'query' or 'target', not {side!r}")
    return list(getattr(config.task.retrieval, side))


def pair_table(data: Data, config: PolymodalConfig, data_root: str | Path | None = None) -> Table:
    """The query and target columns of ``data`` with each row's position as its label (its pair id)."""
    table = read_table(data, data_root if data_root is not None else config.data_root)
    columns = side_columns(config, "query") + side_columns(config, "target")
    missing = [c for c in columns if c not in table.frame.columns]
    if missing:
        raise SchemaError(
            f"query/target column(s) {', '.join(missing)} are not in the table; its columns are: "
            f"{', '.join(map(str, table.frame.columns))}"
        )
    frame = table.frame[columns].copy()
    frame[PAIR_COLUMN] = np.arange(len(frame))
    return Table(frame, table.root, table.source)


def retrieval_task(pipeline: FittedPipeline) -> RetrievalTask:
    if not isinstance(pipeline.task, RetrievalTask):
        raise ConfigError(f"embed and search need a retrieval model; this one is {pipeline.problem_type}")
    return pipeline.task


def embed(
    pipeline: FittedPipeline,
    data: Data,
    side: str = "query",
    data_root: str | Path | None = None,
    chunk_rows: int | None = None,
) -> np.ndarray:
    """Unit-norm float32 vectors ``[rows, dim]`` of ``side``'s columns of ``data``, one per row in order."""
    task = retrieval_task(pipeline)
    columns = side_columns(pipeline.config, side)
    table = read_table(data, data_root if data_root is not None else pipeline.config.data_root)
    missing = [c for c in columns if c not in table.frame.columns]
    if missing:
        raise SchemaError(
            f"the {side} column(s) {', '.join(missing)} are not in the table; its columns are: "
            f"{', '.join(map(str, table.frame.columns))}"
        )
    frame = table.frame[columns].copy()
    for other in side_columns(pipeline.config, "target" if side == "query" else "query"):
        frame[other] = None  # the other tower reads empty cells; its output is not used
    parts = [
        out
        for _, out in pipeline.chunks(Table(frame, table.root, table.source), on_error="fail", chunk_rows=chunk_rows)
    ]
    return task.embeddings(join_outputs(task, parts), side)


def save_vectors(vectors: np.ndarray, path: str | Path) -> Path:
    """Write ``vectors`` as a .npy file (no pickle), atomically."""
    with atomic_file(Path(path), "wb") as f:
        np.save(f, np.asarray(vectors, dtype=np.float32), allow_pickle=False)
    return Path(path)


def build_index(pipeline: FittedPipeline, vectors: np.ndarray, run_dir: str | Path) -> Path:
    """An approximate index of ``vectors`` (a target collection), saved in ``run_dir``/search_index."""
    retrieval_task(pipeline)
    return ApproximateIndex.build(vectors).save(Path(run_dir) / INDEX_DIR)


def find(
    pipeline: FittedPipeline,
    queries: Data | np.ndarray,
    collection: Data | np.ndarray | ApproximateIndex,
    k: int = 10,
    data_root: str | Path | None = None,
) -> Hits:
    """The top-``k`` collection rows for each query row: exact up to ``task.retrieval.exact_max_rows`` collection
    rows, approximate (usearch) above. Tables are embedded first (queries on the query side, the collection on the
    target side); arrays are taken as embeddings already."""
    q = queries if isinstance(queries, np.ndarray) else embed(pipeline, queries, "query", data_root)
    c = collection
    if not isinstance(c, (np.ndarray, ApproximateIndex)):
        c = embed(pipeline, c, "target", data_root)
    return search(q, c, k, pipeline.config.task.retrieval.exact_max_rows)


def hits_frame(hits: Hits) -> pd.DataFrame:
    """One row per (query, rank): ``query`` (row position), ``rank`` (1 = best), ``target`` (collection row
    position) and ``score`` (cosine similarity)."""
    q, k = hits.indices.shape
    return pd.DataFrame(
        {
            "query": np.repeat(np.arange(q), k),
            "rank": np.tile(np.arange(1, k + 1), q),
            "target": hits.indices.reshape(-1),
            "score": hits.scores.reshape(-1),
        }
    )
