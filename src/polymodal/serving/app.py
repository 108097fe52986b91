"""The FastAPI app: ``POST /predict`` (JSON or multipart), ``POST /generate`` (generation models, see
:mod:`polymodal.serving.generation`), ``GET /health``, ``GET /metadata``; docs at ``/docs``.

Request handling, in order: the body is read up to ``max_body_bytes`` (413 past it) within ``body_timeout_s`` (408),
parsed and validated against the model's columns (400/415/422 naming the row and field), then queued for the
micro-batcher (503 with Retry-After when more than ``decode_workers + max_queue`` requests wait to be decoded). The
batcher's decode stage takes the queued requests as a group, in its own thread: each request is checked against the
server's per-request limits from the file headers (413: pixels, audio seconds, decoded bytes) and decoded from
memory (422 for undecodable files), each with its own answer; decoded requests are merged into one model batch
(collated once: one spectrogram call per batch) while the next group is decoded. Decoding and the model together
get ``request_timeout_s`` (504). Anything unexpected is a 500 with a message; the server keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.requests import ClientDisconnect

from ..data.dataset import Collator, Prepared
from ..errors import ConfigError
from ..pipeline import NONFINITE_OUTPUT, FittedPipeline, PipelineSource, as_pipeline, nonfinite_rows
from ..tasks.classification import ClassificationTask
from ..tasks.generation import GenerationTask
from ..tasks.multilabel import MultilabelTask
from ..tasks.multitask import MultiTask, Target
from ..version import __version__
from .backends import Backend, load_backend
from .batcher import MicroBatcher
from .generation import add_generate_route
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import ServerMetrics
from .net import bind
from .payload import RequestError, check_work, decode_rows, parse_form_row, parse_json_rows
from .pool import Overloaded, WorkPool
from .retrieval_routes import add_retrieval_routes
from .schemas import ErrorResponse, PredictResponse, ServeConfig, multipart_schema, request_json_schema, row_model
from .security import Guard, load_api_keys, parse_rate
from .stream import NDJSONStream, StreamPredictor, TimedOut

log = logging.getLogger("polymodal")
RETRIEVAL_REFUSAL = "a retrieval model answers POST /embed (rows -> vectors) and POST /search (rows -> top-k hits)"


class BodyTooLarge(RequestError):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over the limit of {limit:,} bytes (--max-body-mb)")


class ClientGone(RequestError):
    """The client closed the connection before its body arrived: nothing to answer, nothing to log."""

    def __init__(self) -> None:
        super().__init__(400, "the client disconnected")


async def read_body(request: Request, limit: int, timeout_s: float = 30.0) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes (declared or streamed) or when it has not all arrived
    within ``timeout_s`` seconds (408: a slow or stalled body holds a connection and its buffer)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    # one deadline for the whole body (asyncio.timeout, not a wait_for per chunk: that wraps each read in a task)
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {timeout_s:g} s (body_timeout_s)") from None
    except ClientDisconnect:
        raise ClientGone() from None
    return b"".join(chunks)


def check_multipart(body: bytes, content_type: str) -> None:
    """400 unless the body is a complete multipart document for the boundary it declares: the form parser accepts
    a body with no parts (or a truncated one) as an empty form, which would be an all-absent row."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise RequestError(
            400, "the multipart body declares no boundary (content-type: multipart/form-data; boundary=...)"
        )
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    if not body.lstrip(b"\r\n").startswith(delimiter) or not body.rstrip(b"\r\n").endswith(delimiter + b"--"):
        raise RequestError(
            400, "the multipart body is malformed: it must start with its boundary and end with the closing boundary"
        )


class ModelRunner:
    """Collates the decoded rows of several requests into one batch, runs the backend, splits the outputs."""

    def __init__(self, pipeline: FittedPipeline, backend: Backend, metrics: ServerMetrics | None = None):
        self.pipeline, self.backend, self.metrics = pipeline, backend, metrics

    def __call__(self, items: list[Prepared]) -> list[np.ndarray]:
        procs = self.pipeline.processors
        merged = Prepared(
            {m: [v for p in items for v in p.items[m]] for m in procs}, np.arange(sum(len(p) for p in items))
        )
        batch = Collator(merged, procs, False, torch.long)(list(range(len(merged))))
        if self.metrics is not None:
            self.metrics.batch(len(merged))
        outputs = self.backend.run(batch)
        bounds = np.cumsum([0] + [len(p) for p in items])
        return [outputs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _error(status: int, message: str, issues: list[str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=message, issues=issues or []).model_dump(), status_code=status)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count for the block, then the previous one again (``threads`` None: unchanged).

    The count is process-wide. The server process may own it, but only while the app runs (its lifespan):
    building an app (a test, an embedding application) must leave the caller's setting as it was."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def create_app(model: PipelineSource, config: ServeConfig | None = None, backend: Backend | None = None) -> FastAPI:
    """The app serving a fitted model (a Predictor, its pipeline or a run directory). ``backend`` defaults to
    ``config.backend`` built for it (or its own, when it was loaded with one). ``config.threads`` applies to a
    backend built here; torch's process-wide thread count is set while the app runs (startup to shutdown), not when
    it is created."""
    predictor = as_pipeline(model)
    if predictor.problem_type == "reconstruction":
        raise ConfigError(
            "reconstruction (anomaly) models are not served yet: score tables with `polymodal predict RUN TABLE` "
            "or Predictor.load(RUN).predict(table)"
        )
    cfg = config or ServeConfig()
    if backend is None:
        backend = predictor.backend if predictor.backend is not None and cfg.backend != "torch" else None
    threads = None
    if backend is None:
        threads = cfg.threads
        backend = load_backend(cfg.backend, predictor, threads=cfg.threads)
    schema, task = predictor.schema, predictor.task
    row = row_model(schema)
    metrics = ServerMetrics()
    keys = load_api_keys(cfg.api_key_file) if cfg.api_key_file else None
    pool = WorkPool(cfg.decode_workers, cfg.max_queue)  # /predict/stream and /generate decode here

    def _decode_group(requests: list[list[dict[str, Any]] | Prepared]) -> list[Prepared | Exception]:
        """The batcher's decode stage: each request of a group checked and decoded on its own (its error is its
        own answer), in one call on the batcher's decode thread."""
        out: list[Prepared | Exception] = []
        for rows in requests:
            try:
                out.append(rows if isinstance(rows, Prepared) else _check_and_decode(rows))
            except Exception as e:
                out.append(e)
        return out

    batcher: MicroBatcher[Any, np.ndarray] = MicroBatcher(
        ModelRunner(predictor, backend, metrics), cfg.max_batch, cfg.max_wait_ms, size=len, prepare=_decode_group
    )
    # The loaders keep the training limits; the server's lower ones are checked first, from the headers (check_work).
    limits = predictor.config.limits
    multi = task if isinstance(task, MultiTask) else None
    # classifiers answer with each class's probability, multi-label models with each tag's (a list of tags predicted)
    classification = isinstance(task, (ClassificationTask, MultilabelTask))
    clf = cast(ClassificationTask | MultilabelTask, task)  # read only when classification
    generation = isinstance(task, GenerationTask)  # answers POST /generate (serving.generation), not /predict
    retrieval = task.problem_type == "retrieval"  # answers POST /embed and /search (serving.retrieval_routes)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        with torch_threads(threads):
            await batcher.start()
            try:
                yield
            finally:
                await batcher.stop()
                pool.shutdown()

    app = FastAPI(
        title="polymodal model server",
        version=__version__,
        lifespan=lifespan,
        description=f"Predicts '{predictor.label}' ({task.problem_type}) from the columns "
        f"{', '.join(schema.input_columns())}.",
    )
    app.state.batcher, app.state.config, app.state.backend = batcher, cfg, backend
    app.state.metrics = metrics
    if cfg.cors_origins:  # off unless asked: a browser page from another origin cannot call the server
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    # outermost: refused requests never reach the app, and every answer (CORS preflights too) is counted
    app.add_middleware(
        Guard,
        metrics=metrics,
        keys=keys,
        rate=parse_rate(cfg.rate_limit) if cfg.rate_limit else None,
        client_concurrency=cfg.client_concurrency,
        json_log=cfg.access_log == "json",
    )

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, e: RequestError) -> JSONResponse:
        response = _error(e.status, e.message, e.issues)
        response.headers.update(getattr(e, "headers", {}))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        # the message may hold paths or data: it goes to the server's log with the traceback, not to the client
        incident = secrets.token_hex(4)
        log.exception("unexpected error while serving a request (incident %s)", incident)
        return _error(500, f"internal error (incident {incident}; the server's log has the details)")

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> PlainTextResponse:
        """Prometheus text format: requests by route and status, request latency and model batch size
        histograms, requests refused by the guard."""
        return PlainTextResponse(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and how many requests, batches and rows were run so far."""
        s = batcher.stats
        return {"status": "ok", "requests": s.requests, "batches": s.batches, "rows": s.rows}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        """The model's input columns (name and kind), label, problem type, classes (a multi-label model's tags)
        and the server's settings."""
        return {
            "polymodal_version": __version__,
            "label": predictor.label,
            "problem_type": task.problem_type,
            "classes": list(clf.classes) if classification else None,
            "targets": None if multi is None else [_target_info(t) for t in multi.targets],
            "columns": [{"name": c, "kind": schema.kinds()[c].value} for c in schema.input_columns()],
            "backend": backend.registry_name,
            "settings": cfg.model_dump(exclude={"host", "port", "api_key_file"}),
        }

    openapi_body = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": request_json_schema(schema, cfg.max_rows)},
                "multipart/form-data": {"schema": multipart_schema(schema)},
            },
        }
    }
    responses = {s: {"model": ErrorResponse} for s in (400, 401, 408, 413, 415, 422, 429, 503, 504)}

    @app.post("/predict", response_model=PredictResponse, openapi_extra=openapi_body, responses=responses)  # type: ignore[arg-type]
    async def predict(request: Request) -> dict[str, Any]:
        """Predict rows sent as JSON ``{"rows": [...]}`` (files base64-encoded) or one row as multipart form data
        (files as file parts). Every input column must be present; ``null`` (or an empty form field) = absent. A row
        whose model output is NaN or inf (numeric inputs are clipped, so it takes e.g. corrupt weights) gets no
        prediction: the request is answered 422 naming it."""
        if generation:
            raise RequestError(400, "this model generates text: POST the rows to /generate")
        if retrieval:
            raise RequestError(400, RETRIEVAL_REFUSAL)
        rows = await _read_rows(request)
        if batcher.preparing >= cfg.decode_workers + cfg.max_queue:
            raise Overloaded(
                f"the server is busy: {batcher.preparing} requests are being decoded or waiting (decode_workers="
                f"{cfg.decode_workers}, max_queue={cfg.max_queue}); retry shortly"
            )
        try:
            async with asyncio.timeout(cfg.request_timeout_s):
                outputs = await batcher.submit(rows)
        except TimeoutError:
            raise TimedOut(cfg.request_timeout_s) from None
        return _answer(outputs)

    async def _read_rows(request: Request) -> list[dict[str, Any]]:
        """The rows of a /predict or /generate request (JSON, or one row as a form)."""
        body = await read_body(request, cfg.max_body_bytes, cfg.body_timeout_s)
        full_type = request.headers.get("content-type", "")
        ctype = full_type.split(";")[0].strip().lower()
        if ctype == "application/json":
            rows = parse_json_rows(body, row, schema, cfg.max_rows)
        elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):  # a form, with or without files
            if ctype == "multipart/form-data":
                check_multipart(body, full_type)
            rows = await _form_rows(request, body)
        else:
            raise RequestError(
                415, f"unsupported content type '{ctype or 'none'}': send application/json or multipart/form-data"
            )
        return rows

    def _answer(outputs: np.ndarray) -> dict[str, Any]:
        bad = nonfinite_rows(outputs)
        if len(bad):  # never an argmax over NaN: the request is refused, naming the rows (as for undecodable ones)
            raise RequestError(422, "some rows get no prediction", [f"row {i}: {NONFINITE_OUTPUT}" for i in bad])
        return {"predictions": _answers(outputs)}

    def _answers(outputs: np.ndarray) -> list[dict[str, Any]]:
        if multi is not None:
            return multitask_predictions(multi, outputs)
        labels = task.postprocess(outputs)
        probs = clf.predict_proba(outputs) if classification else None
        return [
            {
                "prediction": _plain(labels[i]),
                "probabilities": None if probs is None else {str(c): float(p) for c, p in zip(clf.classes, probs[i])},
            }
            for i in range(len(labels))
        ]

    def _decode_one(r: dict[str, Any]) -> Prepared:
        return _check_and_decode([r])

    stream = StreamPredictor(row, schema, pool, batcher, cfg, _decode_one, lambda o: _answers(o))

    @app.post("/predict/stream", responses=responses)  # type: ignore[arg-type]
    async def predict_stream(request: Request) -> NDJSONStream:
        """NDJSON in, NDJSON out: one JSON row per line in the (chunked) request body, one JSON answer per line in
        the streamed response, in order, as rows arrive: ``{"row", "prediction", "probabilities"}`` or, for a bad
        line, ``{"row", "column", "problem"}``. Files are base64-encoded as in ``/predict``."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if retrieval:
            raise RequestError(400, RETRIEVAL_REFUSAL)
        if ctype not in ("application/x-ndjson", "application/jsonl", "application/json-seq", "text/plain", ""):
            raise RequestError(415, f"unsupported content type '{ctype}': send application/x-ndjson (one row a line)")
        return NDJSONStream(stream.answer(request))

    def _check_and_decode(rows: list[dict[str, Any]]) -> Prepared:
        check_work(rows, schema, limits, cfg)
        return decode_rows(rows, predictor.processors, limits)

    async def _form_rows(request: Request, body: bytes) -> list[dict[str, Any]]:
        # The body was already read under the size limit; starlette's form parser reads this cached copy.
        request._body = body
        try:
            form = await request.form(max_files=len(schema.input_columns()), max_fields=len(schema.input_columns()))
        except Exception as e:  # malformed multipart: the parser raises its own types
            raise RequestError(400, f"the multipart body cannot be parsed: {e}") from None
        if not form.multi_items():
            raise RequestError(400, "the form holds no fields: send one row, a field or file part per input column")
        fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for key, value in form.multi_items():
            if key in fields or key in files:
                raise RequestError(422, f"field '{key}' is sent twice; multipart requests carry one row")
            if isinstance(value, str):
                fields[key] = value
            else:
                files[key] = await value.read()
        return parse_form_row(fields, files, row, schema)

    if generation:
        add_generate_route(app, predictor, backend, cfg, lambda rows: pool.run(_check_and_decode, rows), _read_rows)
    add_retrieval_routes(
        app,
        predictor,
        cfg,
        lambda r: read_body(r, cfg.max_body_bytes, cfg.body_timeout_s),
        lambda rows: pool.run(_check_and_decode, rows),
        lambda prepared: batcher.submit(prepared, prepared=True),
    )
    return app


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _target_info(t: Target) -> dict[str, Any]:
    classes = getattr(t.task, "classes", None)
    return {"name": t.name, "problem_type": t.task.problem_type, "classes": None if classes is None else list(classes)}


def multitask_predictions(task: MultiTask, outputs: np.ndarray) -> list[dict[str, Any]]:
    """A multi-task model's response rows: ``prediction`` maps each target to its value, ``targets`` each target
    to its own ``{"prediction", "probabilities"}`` (probabilities for classification targets, else null)."""
    per_target = {}
    for t in task.targets:
        sub = outputs[:, t.outputs]
        probs = cast(ClassificationTask, t.task).predict_proba(sub) if t in task.classification_targets() else None
        classes = getattr(t.task, "classes", [])
        per_target[t.name] = (t.task.postprocess(sub), probs, classes)
    rows = []
    for i in range(len(outputs)):
        targets = {
            name: {
                "prediction": _plain(values[i]),
                "probabilities": None if probs is None else {str(c): float(p) for c, p in zip(classes, probs[i])},
            }
            for name, (values, probs, classes) in per_target.items()
        }
        rows.append(
            {"prediction": {n: v["prediction"] for n, v in targets.items()}, "probabilities": None, "targets": targets}
        )
    return rows


def serve(
    predictor: PipelineSource, config: ServeConfig, quiet: bool = False, sock: socket.socket | None = None
) -> None:
    """Run the app with uvicorn until interrupted (``quiet``: warnings only, no access log) on ``sock`` (a socket
    from :func:`bind`; bound here when None).

    Bounded: bodies (size, ``body_timeout_s``), idle keep-alive connections (``keep_alive_s``), open connections
    (``max_connections``, 503 past it), queued decodes (``max_queue``, 503) and the time a request may take
    (``request_timeout_s``, 504). Not bounded here: the time a client takes to send its request line and headers
    (uvicorn has no such timeout; put a reverse proxy in front for clients you do not trust)."""
    import uvicorn

    sock = sock or bind(config.host, config.port)
    if config.access_log == "json" and not quiet:
        access = logging.getLogger("polymodal.access")
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.handlers[:], access.propagate = [handler], False
        access.setLevel(logging.INFO)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(predictor, config),
            log_level="warning" if quiet else "info",
            access_log=not quiet and config.access_log == "text",
            timeout_keep_alive=max(1, round(config.keep_alive_s)),
            limit_concurrency=config.max_connections,
        )
    )
    server.run(sockets=[sock])
