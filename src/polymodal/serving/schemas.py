"""Typed server settings and the request/response models, built from the fitted model's schema.

Every input column is a required field (``null`` = the value is absent, which the model handles): a misspelt,
missing or extra field is a 422 with the field named, never a silently absent modality. Files travel as base64 in
JSON or as file parts in multipart; a string is never taken for a path.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..schema import ColumnKind, Schema

FILE_KINDS = (ColumnKind.IMAGE, ColumnKind.AUDIO)
_TYPES: dict[ColumnKind, tuple[Any, str]] = {
    ColumnKind.IMAGE: (str | None, "the image file's bytes, base64-encoded (PNG, JPEG, ...); null = absent"),
    ColumnKind.AUDIO: (str | None, "the audio file's bytes, base64-encoded (WAV, FLAC, OGG, ...); null = absent"),
    ColumnKind.TEXT: (str | None, "text; null = absent"),
    ColumnKind.NUMERIC: (float | None, "a number; null = missing (imputed as in training)"),
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
