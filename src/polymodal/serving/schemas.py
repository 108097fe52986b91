"""Typed server settings and the request/response models, built from the fitted model's schema.

Every input column is a required field (``null`` = the value is absent, which the model handles): a misspelt,
missing or extra field is a 422 with the field named, never a silently absent modality. Files travel as base64 in
JSON or as file parts in multipart; a string is never taken for a path.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from ..schema import ColumnKind, Schema

FILE_KINDS = (ColumnKind.IMAGE, ColumnKind.AUDIO, ColumnKind.VIDEO)
_TYPES: dict[ColumnKind, tuple[Any, str]] = {
    ColumnKind.IMAGE: (str | None, "the image file's bytes, base64-encoded (PNG, JPEG, ...); null = absent"),
    ColumnKind.AUDIO: (str | None, "the audio file's bytes, base64-encoded (WAV, FLAC, OGG, ...); null = absent"),
    ColumnKind.VIDEO: (str | None, "the video file's bytes, base64-encoded (MP4, WebM, MKV, ...); null = absent"),
    ColumnKind.TEXT: (str | None, "text; null = absent"),
    ColumnKind.TIMESERIES: (
        list[float | None] | list[list[float | None]] | str | None,
        "a time series: an array of numbers (steps) or of equal-length arrays (steps x channels), or that array "
        "as a JSON string; null inside = a missing value, null = absent",
    ),
    # inf/NaN are refused here (JSON parsers take 1e400 and NaN): the model cannot use them and the response
    # could not carry their outputs.
    ColumnKind.NUMERIC: (
        Annotated[float, Field(allow_inf_nan=False)] | None,
        "a finite number; null = missing (imputed as in training)",
    ),
    ColumnKind.CATEGORY: (
        str | int | float | bool | None,
        "a category; unseen values map to 'unknown'; null = missing",
    ),
}


class ServeConfig(BaseModel):
    """``polymodal serve`` settings."""

    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    backend: str = "torch"
    max_batch: int = Field(32, ge=1, le=4096, description="rows run together at most (1 = no micro-batching)")
    max_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="how long the first request of a batch waits for others to join it"
    )
    max_body_bytes: int = Field(20_000_000, ge=1, description="larger request bodies get 413")
    max_rows: int = Field(64, ge=1, description="rows in one request at most")
    threads: int | None = Field(None, ge=1, description="intra-op threads of the model (None: the library default)")
    # Per-request work bounds, lower than training's limits (LimitsConfig): the body limit alone does not bound the
    # work, a few kB of PNG can declare 40 M pixels. Checked from the file headers, before anything is decoded.
    max_image_pixels: int = Field(
        4_000_000, ge=1, description="pixels per image at most (header checked before decoding); larger: 413"
    )
    max_audio_seconds: float = Field(60.0, gt=0, description="seconds per audio file at most; longer: 413")
    max_video_seconds: float = Field(
        60.0, gt=0, description="seconds per video file at most, by its header (nothing decoded); longer: 413"
    )
    max_decoded_bytes: int = Field(
        256_000_000,
        ge=1,
        description="decoded size of all the files of one request at most (estimated from their headers: "
        "4 bytes per pixel, 4 bytes per audio sample and channel); larger: 413",
    )
    decode_workers: int = Field(
        2,
        ge=1,
        le=256,
        description="worker threads decoding /predict/stream and /generate files (/predict requests are decoded in "
        "groups by the micro-batcher's decode thread); decode_workers + max_queue requests may wait to be decoded",
    )
    max_queue: int = Field(
        32,
        ge=0,
        description="requests waiting to be decoded at most (beyond decode_workers); more get 503 with Retry-After",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="a request still being decoded or run after this many seconds gets 503"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="a request body not fully received within this many seconds gets 408 (slow bodies)"
    )
    keep_alive_s: float = Field(5.0, gt=0, description="idle keep-alive connections are closed after this many seconds")
    max_connections: int | None = Field(
        256, ge=1, description="open connections at most; more get 503 from uvicorn (None: no limit)"
    )
    # Security (serving/security.py): all off by default, the server listens on loopback unless told otherwise.
    api_key_file: str | None = Field(
        None,
        description="file of API keys, one per line; when set every route but /health needs one "
        "('Authorization: Bearer KEY' or 'X-API-Key: KEY'), else 401",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call the server from a browser (CORS); empty: CORS off"
    )
    rate_limit: str | None = Field(
        None, description="requests per client (API key, else address) at most, as N/s, N/min or N/h; more get 429"
    )
    client_concurrency: int | None = Field(
        None, ge=1, description="requests of one client in progress at once at most; more get 429 (None: no limit)"
    )
    access_log: Literal["text", "json"] = Field(
        "text", description="access log format: uvicorn's text lines, or one JSON object per request"
    )
    collection: str | None = Field(
        None,
        description="retrieval models: what POST /search searches, a table of the target columns (embedded at "
        "start), a .npy of target vectors or an index folder (serving/retrieval_routes.py); None: nothing to search",
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None:
            from .security import parse_rate

            parse_rate(v)
        return v


def row_model(schema: Schema) -> type[BaseModel]:
    """One request row: a field per input column. Fields are aliased to the column names, which need not be
    Python identifiers."""
    fields: dict[str, Any] = {}
    for i, col in enumerate(schema.input_columns()):
        kind = schema.kinds()[col]
        typ, desc = _TYPES[kind]
        fields[f"c{i}"] = (typ, Field(..., alias=col, description=f"{kind.value}: {desc}"))
    return create_model("Row", __config__=ConfigDict(extra="forbid", populate_by_name=False), **fields)


def request_json_schema(schema: Schema, max_rows: int) -> dict[str, Any]:
    """The JSON body's schema for the OpenAPI docs (inlined: the body is validated by hand, see app.py)."""
    row = row_model(schema).model_json_schema(by_alias=True)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["rows"],
        "properties": {"rows": {"type": "array", "minItems": 1, "maxItems": max_rows, "items": row}},
    }


def multipart_schema(schema: Schema) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for col in schema.input_columns():
        kind = schema.kinds()[col]
        props[col] = (
            {"type": "string", "format": "binary"}
            if kind in FILE_KINDS
            else {"type": "string", "description": f"{kind.value}; leave out or send empty for absent"}
        )
    return {"type": "object", "properties": props}


class TargetPrediction(BaseModel):
    """One target of a multi-task model's prediction."""

    prediction: Any
    probabilities: dict[str, float] | None = None


class Prediction(BaseModel):
    prediction: Any = Field(
        ..., description="the predicted class, value or text; for a multi-label model, the list of predicted tags"
    )
    probabilities: dict[str, float] | None = Field(
        None,
        description="classification: each class's probability (they sum to 1); multi-label: each tag's own "
        "probability; null otherwise",
    )
    targets: dict[str, TargetPrediction] | None = Field(
        None, description="multi-task models: each target's prediction and (classification) probabilities"
    )


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    error: str
    issues: list[str] = Field(default_factory=list)
