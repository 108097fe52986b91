"""``POST /embed`` and ``POST /search`` of a served retrieval model (``problem_type: retrieval``).

``/embed?side=query`` (or ``?column=NAME``, naming one of the side's columns) takes rows of that side's columns and
answers their unit-norm vectors. ``/search?k=10`` takes rows of the query columns and answers each row's top-K rows
of the server's collection: the one given at start (``polymodal serve RUN --collection items.csv``: a table of the
target columns, embedded once at start; a ``.npy`` of target vectors from ``polymodal embed --side target``; or an
index folder), else the run's saved index (``RUN/search_index``, ``polymodal embed --side target --index``).

Both go through the same guards as ``/predict``: API key and rate limits (middleware), the body limit (413), rows per
request (413), the per-file work limits (413), the decode pool (503) and the request timeout (504); rows are
micro-batched with other requests. The other side's columns are sent to the network as absent cells (their tower's
output is dropped), exactly as :func:`polymodal.retrieval.embed` does for tables.

Models of other problem types answer both routes with 400 naming what they serve instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from pydantic import BaseModel, Field

from ..errors import ConfigError
from ..schema import Schema
from ..search import ApproximateIndex, Hits, search
from ..tasks.retrieval import SIDES, RetrievalTask
from .payload import RequestError, parse_json_rows
from .schemas import ErrorResponse, ServeConfig, request_json_schema, row_model
from .stream import TimedOut

if TYPE_CHECKING:
    from ..pipeline import FittedPipeline

#: the most hits one /search query may ask for
MAX_K = 1000


@dataclass
class Collection:
    """What ``/search`` searches: target vectors (searched exactly or through an index built at start, by
    ``task.retrieval.exact_max_rows``) or a loaded index; ``source`` says where it came from."""

    vectors: np.ndarray | ApproximateIndex
    size: int
    source: str


def load_collection(pipeline: FittedPipeline, source: str | Path, data_root: str | Path | None = None) -> Collection:
    """The collection at ``source``: an index folder (``index.usearch`` + ``index.json``), a ``.npy`` of target
    vectors, or a table of the target columns (embedded here by the target tower)."""
    from ..retrieval import embed

    task = _retrieval_task(pipeline)
    path = Path(source)
    if path.is_dir():
        index = ApproximateIndex.load(path)
        dim = index.dim
        vectors: np.ndarray | ApproximateIndex = index
    elif path.suffix == ".npy":
        if not path.is_file():
            raise ConfigError(f"the collection {path} does not exist (write one with `polymodal embed --side target`)")
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2 or len(arr) == 0:
            raise ConfigError(f"the collection {path} must hold a non-empty [rows, dim] array, not {list(arr.shape)}")
        dim, vectors = arr.shape[1], np.ascontiguousarray(arr, dtype=np.float32)
    else:
        vectors = embed(pipeline, path, "target", data_root)
        dim = vectors.shape[1]
    if dim != task.retrieval.dim:
        raise ConfigError(
            f"the collection {path} holds {dim}-dimensional vectors; this model embeds into {task.retrieval.dim} "
            "dimensions: embed the collection with this model (`polymodal embed RUN items.csv --side target`)"
        )
    size = vectors.size if isinstance(vectors, ApproximateIndex) else len(vectors)
    if isinstance(vectors, np.ndarray) and size > task.retrieval.exact_max_rows:
        vectors = ApproximateIndex.build(vectors)  # once at start, not per request
    return Collection(vectors, size, str(path))


def _retrieval_task(pipeline: FittedPipeline) -> RetrievalTask:
    if not isinstance(pipeline.task, RetrievalTask):
        raise ConfigError(
            f"--collection is for retrieval models; this one is {pipeline.problem_type} (serve it without --collection)"
        )
    return pipeline.task


class EmbedResponse(BaseModel):
    side: str = Field(..., description="the tower that embedded the rows: query or target")
    dim: int = Field(..., description="the vectors' width")
    vectors: list[list[float]] = Field(..., description="one unit-norm vector per row, in the rows' order")


class Hit(BaseModel):
    target: int = Field(..., description="the collection row's position (0 = its first row)")
    score: float = Field(..., description="cosine similarity of the query and the collection row")


class SearchResponse(BaseModel):
    collection: str = Field(..., description="where the searched collection came from")
    collection_rows: int = Field(..., description="rows in the collection")
    hits: list[list[Hit]] = Field(..., description="per query row, its top-k collection rows, best first")


def side_schema(schema: Schema, columns: list[str]) -> Schema:
    """``schema`` restricted to ``columns`` (one tower's input columns)."""
    return Schema(schema.label, [c for c in schema.columns if c.name in columns])


def add_retrieval_routes(
    app: FastAPI,
    pipeline: FittedPipeline,
    config: ServeConfig,
    read_body: Callable[[Request], Awaitable[bytes]],
    decode_rows: Callable[[list[dict[str, Any]]], Awaitable[Any]],
    run_rows: Callable[[Any], Awaitable[np.ndarray]],
) -> None:
    """``POST /embed`` and ``POST /search`` on ``app``. ``read_body`` reads a request body under the server's size
    and time limits, ``decode_rows`` checks and decodes full-schema rows in the worker pool, ``run_rows`` runs the
    decoded rows through the micro-batcher (the network's ``[rows, 2, dim]`` outputs)."""
    responses: dict[int | str, dict[str, Any]] = {
        s: {"model": ErrorResponse} for s in (400, 401, 408, 409, 413, 415, 422, 429, 503, 504)
    }
    task = pipeline.task
    if not isinstance(task, RetrievalTask):
        if config.collection:
            _retrieval_task(pipeline)  # raises: --collection on a model that cannot search
        refusal = f"this model is {task.problem_type}, not a retrieval model: POST its rows to /predict"

        @app.post("/embed", responses=responses, include_in_schema=False)
        async def embed_refused() -> None:
            raise RequestError(400, refusal)

        @app.post("/search", responses=responses, include_in_schema=False)
        async def search_refused() -> None:
            raise RequestError(400, refusal)

        return

    schema = pipeline.schema
    columns = {side: list(getattr(task.retrieval, side)) for side in SIDES}
    schemas = {side: side_schema(schema, cols) for side, cols in columns.items()}
    rows_of = {side: row_model(s) for side, s in schemas.items()}
    all_columns = schema.input_columns()
    collection = load_collection(pipeline, config.collection) if config.collection else None

    async def vectors(request: Request, side: str) -> np.ndarray:
        body = await read_body(request)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(
                415,
                f"unsupported content type '{ctype or 'none'}': send application/json "
                f'{{"rows": [{{{", ".join(repr(c) for c in columns[side])}: ...}}]}} (files base64-encoded)',
            )
        rows = parse_json_rows(body, rows_of[side], schemas[side], config.max_rows)
        # the other tower reads absent cells; its output is dropped
        full = [{c: None for c in all_columns} | r for r in rows]
        try:
            async with asyncio.timeout(config.request_timeout_s):
                outputs = await run_rows(await decode_rows(full))
        except TimeoutError:
            raise TimedOut(config.request_timeout_s) from None
        vecs = task.embeddings(outputs, side)
        bad = np.flatnonzero(~np.isfinite(vecs).all(axis=1))
        if len(bad):
            raise RequestError(
                422, "some rows get no vector", [f"row {i}: the model's output is not finite" for i in bad]
            )
        return vecs

    def body_doc(side: str) -> dict[str, Any]:
        return {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_json_schema(schemas[side], config.max_rows)}},
            }
        }

    @app.post("/embed", response_model=EmbedResponse, responses=responses, openapi_extra=body_doc("query"))
    async def embed(
        request: Request,
        side: Literal["query", "target"] | None = Query(
            None, description="the tower: query (default) or target; the rows carry that side's columns"
        ),
        column: str | None = Query(None, description="instead of side: one of the side's columns names the side"),
    ) -> dict[str, Any]:
        """Unit-norm vectors of rows of one side's columns (JSON ``{"rows": [...]}``, files base64-encoded), one
        per row in order."""
        chosen = _side(side, column, columns)
        vecs = await vectors(request, chosen)
        return {"side": chosen, "dim": int(vecs.shape[1]), "vectors": vecs.tolist()}

    @app.post("/search", response_model=SearchResponse, responses=responses, openapi_extra=body_doc("query"))
    async def search_route(
        request: Request, k: int = Query(10, ge=1, le=MAX_K, description="hits per query row")
    ) -> dict[str, Any]:
        """The top-``k`` rows of the server's collection for each query row (rows of the query columns, JSON
        ``{"rows": [...]}``): collection row positions and cosine similarities, best first."""
        if collection is None:
            raise RequestError(
                409,
                "this server has no collection to search: start it with `polymodal serve RUN --collection "
                "items.csv` (a table of the target columns, or a .npy from `polymodal embed --side target`), or "
                "save an index into the run first (`polymodal embed RUN items.csv --side target --index`)",
            )
        queries = await vectors(request, "query")
        hits = await asyncio.to_thread(search, queries, collection.vectors, k, task.retrieval.exact_max_rows)
        return {"collection": collection.source, "collection_rows": collection.size, "hits": _hit_rows(hits)}


def _side(side: str | None, column: str | None, columns: dict[str, list[str]]) -> str:
    if column is None:
        return side or "query"
    owner = [s for s, cols in columns.items() if column in cols]
    if not owner:
        raise RequestError(
            422,
            f"'{column}' is not a query or target column of this model; query columns: "
            f"{', '.join(columns['query'])}; target columns: {', '.join(columns['target'])}",
        )
    if side is not None and side != owner[0]:
        raise RequestError(422, f"column '{column}' is a {owner[0]} column, not a {side} column")
    return owner[0]


def _hit_rows(hits: Hits) -> list[list[dict[str, Any]]]:
    # an approximate index of a tiny collection can miss neighbours: their key is -1, dropped here
    return [
        [{"target": int(t), "score": float(s)} for t, s in zip(idx, sc, strict=True) if t >= 0]
        for idx, sc in zip(hits.indices, hits.scores, strict=True)
    ]
